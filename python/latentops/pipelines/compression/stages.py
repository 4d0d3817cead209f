"""The two fine-tuning runs of `latentops compress`, tasks of the runner that wrap the source run's
task (its data, losses and evaluation) around a model being compressed:

- PruneStage (folder prune/): the layers pruned by magnitude, then fine-tuned with their pruned
  weights' gradients masked (latentops.codecs.apply_pruning_mask), so they stay exactly 0;
- ShareStage (folder share/ beside prune/): the pruned, fine-tuned weights quantized
  (latentops.codecs.quantize) into SharedWeightLinear / SharedWeightConv2d layers, whose codebooks
  then fine-tune with the grouped gradient (each codeword gets the sum of its weights' gradients).

Both fine-tune every other parameter of the task's groups as well (biases, batch norms, layers left
dense, ACAI's critic) with the source's optimizer class and settings at --lr, and neither runs the
source's after_step (a Parseval retraction would undo the pruning)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from latentops.codecs import SharedWeights, apply_pruning_mask, quantize
from latentops.nn import SharedWeightConv2d, SharedWeightLinear
from latentops.pipelines import checkpoint
from latentops.pipelines.compression.config import CompressConfig
from latentops.pipelines.compression.layers import (
    group_of_modules,
    plan_layers,
    pruning_masks,
    regroup,
    replace,
)
from latentops.pipelines.compression.source import load_source, read_source
from latentops.pipelines.task import Task, Training

PRUNE_DIR = "prune"
SHARED_LAYERS = {"linear": SharedWeightLinear, "conv2d": SharedWeightConv2d}


class PruneStage(Task):
    name = "compression-prune"
    config_class = CompressConfig
    identity = ("run", "prune", "scope", "per_layer", "layers", "lr", "steps")
    stage = "prune"

    def __init__(self, config: CompressConfig):
        super().__init__(config)
        self.source_class = read_source(config.run)[0]  # a wrong RUN fails before any work
        self.progress_loss = self.source_class.progress_loss

    def describe(self) -> dict:
        return {"run": Path(self.config.run).name, "stage": self.stage}

    def build(self, device: torch.device) -> Training:
        config = self.config
        self.device = device
        self.source, training = load_source(config.run, device, batch_size=config.batch_size, seed=config.seed)
        self.model = training.model
        first_group = next(iter(training.groups.values()))
        self.plans = plan_layers(self.model, first_group, config)
        self.masks = pruning_masks(self.model, self.plans, config.scope, config.prune)
        self._source_training = training
        self._module_groups = group_of_modules(self.model, training.groups)
        self._hooks = [
            apply_pruning_mask(self.model.get_submodule(name).weight, mask) for name, mask in self.masks.items()
        ]
        return self.fine_tuning()

    def fine_tuning(self) -> Training:
        """Fresh optimizers of the source's classes and settings over the model's current
        parameters, group by group, at the fine-tuning rate for the first half of the stage and a
        tenth of it for the second (the last steps settle the weights: at a constant rate the test
        accuracy of a digits conv net still moved by ±2 points from one evaluation to the next)."""
        source = self._source_training
        groups = regroup(self.model, self._module_groups, list(source.groups))
        optimizers, schedulers = {}, {}
        half = self.config.steps // 2
        for name, optimizer in source.optimizers.items():
            lr = self.config.lr if self.config.lr is not None else optimizer.defaults["lr"] / 10
            params = self._param_groups(groups[name], lr) if isinstance(optimizer, torch.optim.SGD) else groups[name]
            optimizers[name] = type(optimizer)(params, **{**optimizer.defaults, "lr": lr})
            schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                optimizers[name], lambda step: 1.0 if step < half else 0.1
            )
        return Training(self.model, groups, optimizers, schedulers)

    def _param_groups(self, params: list[torch.nn.Parameter], lr: float) -> list[dict]:
        """SGD's parameter groups: the parameters at `lr`, except each shared layer's codebook, at
        lr over the number of kept weights per codeword. Its gradient is the sum of theirs (sHAM's
        and Deep Compression's grouped gradient), so at `lr` a codeword moves as far as all its
        weights together would: measured on a digits MLP pruned 90% with k = 2 (50,000 weights a
        codeword), SGD at 0.02 sent the loss from 0.3 to 9.6 in 20 steps and left every ReLU dead.
        (Adam and its kin divide by the gradient's scale themselves: their codebooks keep `lr`.)"""
        codebooks = {
            id(m.codebook): lr * m.codebook.numel() / max(1, int(m.mask.sum()))
            for m in self.model.modules()
            if isinstance(m, tuple(SHARED_LAYERS.values()))
        }
        rest = [p for p in params if id(p) not in codebooks]
        return [{"params": rest}] + [{"params": [p], "lr": codebooks[id(p)]} for p in params if id(p) in codebooks]

    def batch(self, step: int, rank: int, world: int):
        return self.source.batch(step, rank, world)

    def losses(self, batch):
        return self.source.losses(batch)

    def evaluate(self, step: int, run_dir) -> dict:
        return self.source.evaluate(step, run_dir)


class ShareStage(PruneStage):
    name = "compression-share"
    identity = (*PruneStage.identity, "quantizer", "k", "lam")
    stage = "share"

    def build(self, device: torch.device) -> Training:
        super().build(device)  # the source, its plans and masks
        for hook in self._hooks:
            hook.remove()
        folder = Path(self.config.out)
        resumed = checkpoint.latest(folder) if self.config.resume else None
        if resumed is not None:
            # The codes of the run being resumed, not a new quantization: its codebooks' sizes and
            # its codes are what the checkpoint's optimizer state belongs to.
            self.install(load_file(str(resumed / checkpoint.MODEL)))
        else:
            pruned = checkpoint.latest(folder.parent / PRUNE_DIR)
            if pruned is None:
                raise FileNotFoundError(f"{str(folder.parent / PRUNE_DIR)!r} holds no finished pruning stage")
            pruning = self.fine_tuning()  # the optimizers of the pruned model, as the prune stage saved them
            checkpoint.load(pruned, self.model, pruning.optimizers, device, pruning.schedulers)
            self.install(None)
        return self.fine_tuning()

    def install(self, state: dict | None) -> None:
        """Swap every planned layer for its shared-weight form: quantized now (state None), or with
        the codes, codebook and mask of a saved state_dict."""
        for name, plan in self.plans.items():
            layer = self.model.get_submodule(name)
            if state is None:
                shared = self.quantize(name, layer.weight.detach())
            else:
                shared = SharedWeights(state[f"{name}.codes"], state[f"{name}.codebook"], state[f"{name}.mask"])
            replace(self.model, name, SHARED_LAYERS[plan.kind].from_module(layer, shared.to(self.device)))

    def quantize(self, name: str, weight: torch.Tensor) -> SharedWeights:
        config, mask = self.config, self.masks[name]
        options = {}
        if config.quantizer == "ecsq":
            # λ in the layer's own units: |w − c| is in the weights' scale, −ln p in nats.
            kept = weight[mask].abs()
            options["lam"] = config.lam * float(kept.mean()) if kept.numel() else 0.0
        return quantize(weight, self.plans[name].k, method=config.quantizer, mask=mask, seed=config.seed, **options)


__all__ = ["PRUNE_DIR", "PruneStage", "ShareStage"]
