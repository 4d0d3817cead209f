"""The file `latentops compress` writes: a whole compressed model in one latentops.codecs container.

Each compressed layer's weight is stored in the smallest of the formats (every one is encoded, its
size recorded); everything else of the model's state (biases, batch norms, layers left dense) as a
plain tensor. The metadata names the source task and holds its config, so load_compressed rebuilds
the model from the file alone (a distilled student still reads its teacher's config.json for the
dataset). The loaded model runs each compressed layer as CompressedLinear / CompressedConv2d on its
hcsr form (a layer stored in another format is transcoded once at load: decoded, re-encoded, the
dense copy dropped)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from latentops.codecs import FORMATS, CorruptedFileError, HcsrMatrix, SharedWeights, encode_hcsr, load_file, save_file
from latentops.codecs.matrix import CompressedMatrix
from latentops.nn import CompressedConv2d, CompressedLinear
from latentops.pipelines.compression.layers import Plan, compact, replace
from latentops.pipelines.compression.source import HEADLINE
from latentops.pipelines.task import Task

FILE = "model.lops"
_CONV_SETTINGS = ("in_channels", "kernel_size", "stride", "padding", "dilation")


def encode_layer(shared: SharedWeights) -> tuple[CompressedMatrix, dict[str, int]]:
    """The layer's weight (flattened to (out, in·kh·kw)) in its smallest format, and the bytes of
    every format."""
    shared = compact(shared.to("cpu"))
    rows = shared.shape[0]
    flat = SharedWeights(shared.codes.reshape(rows, -1), shared.codebook, shared.mask.reshape(rows, -1))
    encoded = {name: cls.encode(flat) for name, cls in FORMATS.items()}
    best = min(encoded.values(), key=lambda m: m.nbytes)
    return best, {name: m.nbytes for name, m in encoded.items()}


def layer_settings(module: nn.Module, plan: Plan) -> dict:
    settings = {"kind": plan.kind, "shape": list(module.codes.shape)}
    if plan.kind == "conv2d":
        settings.update({name: getattr(module, name) for name in _CONV_SETTINGS})
    return settings


def save_compressed(
    path: Path, model: nn.Module, matrices: dict[str, CompressedMatrix], settings: dict[str, dict], source: Task
) -> None:
    """model: the fine-tuned model with its compressed layers in shared-weight form; matrices and
    settings: per compressed layer, its encoded weight and layer_settings."""
    entries: dict[str, CompressedMatrix | torch.Tensor] = {f"{name}.weight": m for name, m in matrices.items()}
    skipped = {f"{name}.{part}" for name in matrices for part in ("codes", "codebook", "mask")}
    entries.update({key: t for key, t in model.state_dict().items() if key not in skipped})
    metadata = {
        "task": source.name,
        "config": dataclasses.asdict(source.config),
        "layers": settings,
    }
    save_file(entries, path, metadata)


def _as_hcsr(matrix: CompressedMatrix) -> HcsrMatrix:
    if isinstance(matrix, HcsrMatrix):
        return matrix
    dense = matrix.decode()
    mask = dense != 0  # a kept weight whose level is 0.0 multiplies as a pruned one
    codebook, codes = torch.unique(dense[mask], return_inverse=True)
    full = torch.zeros(dense.shape, dtype=torch.int64)
    full[mask] = codes
    return encode_hcsr(full, mask, codebook if codebook.numel() else torch.zeros(1))


def _check_layer(name: str, original: nn.Module, matrix: CompressedMatrix, bias, bad) -> None:
    """The stored weight and bias are what the model's layer holds: its flattened weight's shape,
    its bias's presence, dtype and shape (a wrong bias dtype would be cast without a word)."""
    rows = original.weight.shape[0]
    if matrix.shape != (rows, original.weight[0].numel()):
        raise bad(f"layer {name!r}: a {matrix.shape} matrix for a weight of shape {tuple(original.weight.shape)}")
    expected = original.bias
    if (bias is None) != (expected is None):
        raise bad(f"layer {name!r}: its bias is {'missing' if bias is None else 'unexpected'}")
    if bias is not None and (bias.dtype != expected.dtype or bias.shape != expected.shape):
        got, want = f"{bias.dtype} {tuple(bias.shape)}", f"{expected.dtype} {tuple(expected.shape)}"
        raise bad(f"layer {name!r}: its bias is {got}, the model's {want}")


def load_compressed(
    path, device: torch.device | str = "cpu", *, backend: str | None = None
) -> tuple[Task, nn.Module, dict]:
    """(the source task, its model with compressed layers in eval mode, the file's metadata) from a
    FILE, the layers' kernels chosen by `backend` (None: compressed_linear's default); a
    CorruptedFileError names the file and what is wrong."""
    from latentops.pipelines.tasks import TASKS

    path, device = Path(path), torch.device(device)
    entries, metadata = load_file(path)  # checksums, header and every matrix validated

    def bad(what: str) -> CorruptedFileError:
        return CorruptedFileError(f"{path}: {what}")

    name = metadata.get("task")
    layers, saved = metadata.get("layers"), metadata.get("config")
    if name not in HEADLINE or not isinstance(layers, dict) or not isinstance(saved, dict):
        raise bad("its metadata names no task, config and layers: not a file of `latentops compress`")
    task_class = TASKS[name]
    fields = {f.name for f in dataclasses.fields(task_class.config_class)}
    try:
        config = task_class.config_class(**{k: v for k, v in saved.items() if k in fields})
    except TypeError as error:
        raise bad(f"its config does not make a {name} run: {error}") from None
    try:
        task = task_class(config)
    except (OSError, ValueError) as error:  # its dataset, or a distilled student's teacher, is not here
        raise type(error)(f"{path}: the run it was compressed from cannot be rebuilt here: {error}") from None
    model = task.build(device).model
    for name, settings in layers.items():
        matrix = entries.pop(f"{name}.weight", None)
        bias = entries.pop(f"{name}.bias", None)
        if not isinstance(matrix, CompressedMatrix) or not isinstance(settings, dict):
            raise bad(f"layer {name!r} has no compressed weight")
        try:
            original = model.get_submodule(name)
        except AttributeError:
            raise bad(f"layer {name!r} is not in the model") from None
        _check_layer(name, original, matrix, bias, bad)
        try:
            matrix = _as_hcsr(matrix)
            if settings.get("kind") == "conv2d":
                conv = {key: settings[key] for key in _CONV_SETTINGS}
                layer = CompressedConv2d(matrix, bias, backend=backend, **conv)
            else:
                layer = CompressedLinear(matrix, bias, backend=backend)
            replace(model, name, layer.to(device))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise bad(f"layer {name!r} does not fit the model: {error}") from None
    expected = {key: t for key, t in model.state_dict().items() if key.rpartition(".")[0] not in layers}
    if set(entries) != set(expected):
        missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
        raise bad(f"its tensors do not fit the model (missing {missing[:5]}, unexpected {extra[:5]})")
    for key, t in entries.items():  # load_state_dict would cast another dtype without a word
        if not isinstance(t, torch.Tensor) or t.dtype != expected[key].dtype or t.shape != expected[key].shape:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise bad(f"tensor {key!r} is {got}, the model's is {expected[key].dtype} {tuple(expected[key].shape)}")
    try:
        model.load_state_dict(entries, strict=False)
    except RuntimeError as error:
        raise bad(f"its tensors do not fit the model: {error}") from None
    model.eval()
    task.model = model
    return task, model, metadata
