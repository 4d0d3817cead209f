"""Perturbations of a model rather than of its input: k-bit uniform quantization of its weights and
dropout at test time on the outputs of chosen submodules."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from latentops.ops.checks import check_int, check_real
from latentops.robustness._common import check_model, resolve_generator

# Beyond 24 bits the levels are finer than float32 can tell apart.
MAX_BITS = 24


@torch.no_grad()
def kbit_weights(model: nn.Module, bits: int = 5) -> nn.Module:
    """A deep copy of `model` in which every parameter with more than one dimension (the weights of
    linear, convolution and embedding layers) is uniformly quantized, tensor by tensor, to at most
    2^bits levels evenly spaced over that tensor's own [min, max]: w ← min + round((w − min)/Δ)·Δ with
    Δ = (max − min)/(2^bits − 1), the end levels being exactly min and max. One-dimensional parameters
    (biases, the scales and shifts of normalization layers) and buffers (running statistics) are left
    untouched, as is a constant weight.
    `model` itself is not modified; tied weights stay tied in the copy."""
    check_model("model", model)
    bits = check_int("bits", bits, minimum=1)
    if bits > MAX_BITS:
        raise ValueError(f"bits must be an integer ≥ 1 and ≤ {MAX_BITS}, got {bits}")
    levels = 2**bits - 1
    quantized = copy.deepcopy(model)
    for param in quantized.parameters():  # each shared tensor once
        if param.dim() <= 1 or param.numel() == 0:
            continue
        w = param.detach().to(torch.float64)
        low, high = w.min(), w.max()
        if not bool(torch.isfinite(low) & torch.isfinite(high)) or low == high:
            continue
        step = torch.round((w - low) / ((high - low) / levels)).clamp_(0, levels)
        # low + step·Δ lands a few float64 ulps off max at step = levels (past the tensor's range
        # for float64 weights); torch.lerp is exact at both ends.
        param.copy_(torch.lerp(low.expand_as(w), high, step / levels).to(param.dtype))
    return quantized


def _dropout(t: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    if p == 0.0 or not t.is_floating_point():
        return t
    if p == 1.0:
        return torch.zeros_like(t)
    keep = torch.rand(t.shape, generator=gen, device=t.device) >= p
    return t * keep.to(t.dtype) / (1.0 - p)


class with_test_time_dropout:  # lowercase: read like a function, with with_test_time_dropout(...)
    """A context manager that applies dropout with probability p (inverted: kept entries scaled by
    1/(1 − p), as F.dropout(training=True)) to the output of each of `modules` (submodules of `model`,
    or their names as in model.named_modules()), whatever mode the model is in:

        with with_test_time_dropout(model, 0.1, [model.fc1]):
            logits = model(x)

    Forward hooks do it; they are removed on exit, even after an exception. Every forward pass draws a
    fresh mask from `generator`, or from a generator seeded with `seed` when the block is entered, or
    from torch's global generator; nothing else is carried from one pass or block to the next. p = 0
    gives exactly the clean output. Tensor outputs and tuples/lists of tensors are handled; integer
    tensors pass through."""

    def __init__(
        self,
        model: nn.Module,
        p: float,
        modules: Iterable[nn.Module | str],
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ):
        check_model("model", model)
        self.p = check_real("p", p, minimum=0.0, maximum=1.0)
        if isinstance(modules, (nn.Module, str)) or not isinstance(modules, Iterable):
            raise TypeError(f"modules must be a list of submodules of model or their names, got {modules!r}")
        own = {id(m) for m in model.modules()}
        resolved = []
        for i, m in enumerate(modules):
            if isinstance(m, str):
                try:
                    m = model.get_submodule(m)
                except AttributeError:
                    raise ValueError(f"modules[{i}]: model has no submodule named {m!r}") from None
            elif not isinstance(m, nn.Module):
                raise TypeError(f"modules[{i}] must be a submodule of model or its name, got {type(m).__name__}")
            elif id(m) not in own:
                raise ValueError(f"modules[{i}] ({type(m).__name__}) is not a submodule of model")
            resolved.append(m)
        if not resolved:
            raise ValueError("modules must name at least one submodule of model")
        if generator is not None and seed is not None:
            raise ValueError("give generator or seed, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.model, self.modules, self.generator, self.seed = model, resolved, generator, seed
        self._handles: list = []
        self._generators: dict[torch.device, torch.Generator | None] = {}

    def _gen(self, device: torch.device) -> torch.Generator | None:
        if device not in self._generators:
            self._generators[device] = resolve_generator(self.generator, self.seed, device)
        return self._generators[device]

    def _hook(self, module, inputs, output):
        if isinstance(output, torch.Tensor):
            return _dropout(output, self.p, self._gen(output.device))
        if isinstance(output, (tuple, list)):
            dropped = [_dropout(o, self.p, self._gen(o.device)) if isinstance(o, torch.Tensor) else o for o in output]
            if hasattr(output, "_fields"):  # a namedtuple takes its fields as arguments
                return type(output)(*dropped)
            return type(output)(dropped)
        raise TypeError(
            f"with_test_time_dropout: {type(module).__name__} returned {type(output).__name__}, "
            "not a tensor or a tuple/list of tensors"
        )

    def __enter__(self) -> nn.Module:
        if self._handles:
            raise RuntimeError("with_test_time_dropout is already active; it cannot be entered twice")
        self._generators = {}
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self.model

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._generators = {}
