"""`latentops compress RUN ... --out DIR`: prune and fine-tune (DIR/prune), quantize and fine-tune the
codebooks (DIR/share), then encode every layer in every format keeping the smallest (DIR/model.lops),
and judge the model loaded back from that file alone: the source task's evaluation, each layer's
sensitivity and its time against the dense layer, the whole model's ψ. Writes DIR/metrics.json
(a run of the task "compression" for `latentops report`) and DIR/report.md (the per-layer table)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentops.codecs import sham_paper_psi
from latentops.nn import CompressedConv2d
from latentops.ops.compressed_linear import decompress
from latentops.pipelines import checkpoint
from latentops.pipelines.compression.config import CompressConfig
from latentops.pipelines.compression.layers import replace
from latentops.pipelines.compression.model_file import (
    FILE,
    encode_layer,
    layer_settings,
    load_compressed,
    save_compressed,
)
from latentops.pipelines.compression.report import layer_table
from latentops.pipelines.compression.source import HEADLINE, load_source, read_source
from latentops.pipelines.compression.stages import PRUNE_DIR, SHARED_LAYERS, PruneStage, ShareStage
from latentops.pipelines.distributed import resolve_device
from latentops.pipelines.run_folder import RunFolder
from latentops.pipelines.runner import run

REPORT = "report.md"


def compress(config: CompressConfig, stages_dir: Path | None = None, share_name: str = "share") -> dict:
    """One compression of config.run into config.out; the stage runs go to stages_dir (default
    config.out: DIR/prune and DIR/share; --grid shares one pruning among its points)."""
    point = Path(config.out)
    stages_dir = point if stages_dir is None else stages_dir
    prune = run(PruneStage, dataclasses.replace(config, out=str(stages_dir / PRUNE_DIR)))
    share_dir = stages_dir / share_name
    share = run(ShareStage, dataclasses.replace(config, out=str(share_dir)))
    folder = RunFolder(point)
    folder.lock()
    try:
        summary = finish(config, point, share_dir, fine_tuning={"prune": prune, "share": share})
        folder.write_summary(summary)
    finally:
        folder.unlock()
    return summary


def _dense_bytes(model: nn.Module) -> int:
    """The model's state at 4 bytes per floating-point entry (what the dense float32 model weighs)."""
    return 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())


def finish(config: CompressConfig, point: Path, share_dir: Path, fine_tuning: dict) -> dict:
    """Encode the share stage's model into point/FILE, then judge the model loaded from that file;
    returns the summary (also written as point/REPORT's table)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    # The fine-tuned model, its layers in shared-weight form, as the share stage left it.
    stage = ShareStage(dataclasses.replace(config, out=str(share_dir), resume=True))
    training = stage.build(device)
    checkpoint.load(checkpoint.latest(share_dir), training.model, training.optimizers, device, training.schedulers)
    path = point / FILE
    matrices, sizes, stats = _encode(stage, path, config)

    # Everything below sees only the file.
    task, model, _ = load_compressed(path, device)
    metric, higher = HEADLINE[task.name]
    inputs, hooks = _capture_inputs(model, list(matrices), config.time_batch)
    with tempfile.TemporaryDirectory() as scratch:
        evaluation = _evaluate(task, Path(scratch))
        for hook in hooks:
            hook.remove()
        source, source_training = load_source(config.run, device, batch_size=config.batch_size, seed=config.seed)
        source_value = _evaluate(source, Path(scratch), final=False)[metric]
        paired = _paired_test(source, task) if hasattr(task, "test_predictions") else None
        layers = []
        for name, plan in _bar(stage.plans.items(), "each layer's sensitivity and time", config):
            row = _layer_row(name, plan, model.get_submodule(name), matrices[name], sizes[name], stats[name])
            alone = _alone(stage, source, name, plan, Path(scratch))[metric]
            layers.append({**row, "delta": alone - source_value, **_times(model.get_submodule(name), inputs.get(name))})
    source_summary = read_source(config.run)[2]
    dense_bytes = _dense_bytes(source_training.model)
    file_bytes = path.stat().st_size
    weights = sum(math.prod(row["shape"]) for row in layers)
    summary = {
        "task": "compression",
        **{key: source_summary[key] for key in ("arch", "model", "dataset", "variant") if key in source_summary},
        "source": str(config.run),
        "source_task": task.name,
        **{key: getattr(config, key) for key in ("quantizer", "k", "prune", "scope", "per_layer")},
        "compressed_layers": config.layers,  # --layers ("layers" is the per-layer table)
        **{key: getattr(config, key) for key in ("lam", "lr", "steps", "seed")},
        "metric": metric,
        "higher_is_better": higher,
        "source_value": source_value,
        "value": evaluation[metric],
        "delta": evaluation[metric] - source_value,
        "file_bytes": file_bytes,
        "dense_bytes": dense_bytes,
        "psi": file_bytes / dense_bytes,
        "ratio": dense_bytes / file_bytes,
        "psi_weights": sum(row["bytes"] for row in layers) / (4 * weights),
        "kept": sum(row["kept"] for row in layers) / weights,
        "paired_test": paired,
        "evaluation": evaluation,
        "fine_tuned": {name: stage_summary.get(metric) for name, stage_summary in fine_tuning.items()},
        "layers": layers,
        "file": FILE,
    }
    (point / REPORT).write_text(layer_table(summary))
    return summary


def _encode(stage: ShareStage, path: Path, config: CompressConfig) -> tuple[dict, dict, dict]:
    """Every planned layer of the stage's model in its smallest format, saved with the rest of the
    model to `path`; returns per layer the matrix, every format's bytes, and kept count and entropy."""
    matrices, sizes, settings, stats = {}, {}, {}, {}
    for name, plan in _bar(stage.plans.items(), "encoding every layer in every format", config):
        module = stage.model.get_submodule(name)
        shared = module.shared_weights()
        matrices[name], sizes[name] = encode_layer(shared)
        settings[name] = layer_settings(module, plan)
        stats[name] = {"kept": int(shared.mask.sum()), "entropy": shared.entropy()}
    save_compressed(path, stage.model, matrices, settings, stage.source)
    return matrices, sizes, stats


def _alone(stage: ShareStage, source, name: str, plan, scratch: Path) -> dict:
    """Deep Compression's per-layer sensitivity: the source's evaluation with this layer alone
    pruned and quantized as the stages did, from its trained weights, without fine-tuning."""
    original = source.model.get_submodule(name)
    shared = stage.quantize(name, original.weight.detach())
    replace(source.model, name, SHARED_LAYERS[plan.kind].from_module(original, shared))
    try:
        return _evaluate(source, scratch, final=False)
    finally:
        replace(source.model, name, original)


def _paired_test(source, compressed) -> dict:
    """McNemar's exact test of the two classifiers on the same test images: of the images exactly
    one of them gets right, is the split further from even than chance would make it?"""
    from scipy.stats import binomtest

    before, labels = source.test_predictions()
    after, _ = compressed.test_predictions()
    right_before, right_after = before == labels, after == labels
    only_source, only_compressed = int((right_before & ~right_after).sum()), int((~right_before & right_after).sum())
    discordant = only_source + only_compressed
    return {
        "images": int(labels.numel()),
        "only_source_right": only_source,
        "only_compressed_right": only_compressed,
        "p_value": binomtest(only_compressed, discordant, 0.5).pvalue if discordant else 1.0,
    }


def _bar(items, what: str, config: CompressConfig):
    from tqdm.auto import tqdm

    return tqdm(list(items), desc=what, unit="layer", disable=not config.progress)


def _evaluate(task, scratch: Path, final: bool = True) -> dict:
    """The task's evaluation of its model as it is now (and, final, its end-of-run metrics: an
    autoencoder's downstream accuracies), its pictures drawn into `scratch`."""
    metrics = dict(task.evaluate(0, scratch))
    if final:
        metrics.update(task.final_metrics([]))
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _capture_inputs(model: nn.Module, names: list[str], rows: int) -> tuple[dict, list]:
    """A forward pre-hook per layer keeping the first `rows` rows of the first input it sees (the
    layer's real input, for timing it): (layer name → input, filled as the model runs; the hooks)."""
    captured: dict[str, torch.Tensor] = {}

    def keeper(name):
        def hook(module, args):
            if name not in captured:
                captured[name] = args[0][:rows].detach().clone()

        return hook

    return captured, [model.get_submodule(name).register_forward_pre_hook(keeper(name)) for name in names]


def _dense_twin(layer: nn.Module, device: torch.device):
    """The same layer with its weight decoded to a dense float32 tensor: what it replaces."""
    weight = decompress(layer.weight, device=device)
    if isinstance(layer, CompressedConv2d):
        weight = weight.reshape(layer.out_channels, layer.in_channels, *layer.kernel_size)
        return lambda x: F.conv2d(x, weight, layer.bias, layer.stride, layer.padding, layer.dilation)
    return lambda x: F.linear(x, weight, layer.bias)


def _time(fn, x: torch.Tensor) -> float:
    """Median seconds of fn(x) (torch.utils.benchmark: warmed up, synchronized on CUDA)."""
    from torch.utils import benchmark  # ~0.3 s to import: not for every `latentops` command

    with torch.no_grad():
        timer = benchmark.Timer("fn(x)", globals={"fn": fn, "x": x}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=0.2).median


def _layer_row(name, plan, layer, matrix, sizes, stats) -> dict:
    """A row of the per-layer table: the layer (as loaded from the file) and its stored matrix."""
    kept, levels = stats["kept"], int(layer.weight.parts["codebook"].numel())
    shape = [layer.out_channels, layer.in_channels, *layer.kernel_size] if plan.kind == "conv2d" else matrix.shape
    return {
        "name": name,
        "kind": plan.kind,
        "shape": list(shape),
        "prune": plan.prune,
        "k": plan.k,
        "kept": kept,
        "levels": levels,
        "entropy": stats["entropy"],
        "format": matrix.format,
        "bytes": matrix.nbytes,
        "bytes_per_format": sizes,
        "bits_per_nonzero": 8 * matrix.nbytes / max(kept, 1),
        "psi": matrix.psi,
        # sHAM's closed form (the paper's ψ of its own format) for this layer's size, non-zeros and levels
        "psi_paper": sham_paper_psi(matrix.shape, kept, levels),
    }


def _times(layer: nn.Module, x: torch.Tensor | None) -> dict:
    """The layer's median time on its captured input, and its decoded dense twin's."""
    if x is None:
        return {}
    return {
        "time_compressed": _time(layer, x),
        "time_dense": _time(_dense_twin(layer, x.device), x),
        "time_rows": int(x.shape[0]),
    }
