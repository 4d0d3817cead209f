"""One differentiable stage of an op, declared once: a torch custom op for torch.compile, tracing
and opcheck, and a direct call of the same implementation in eager mode.

Why both: calling any torch.library custom op imports torch._dynamo on its first use (~1.5-2.5 s),
which every one-off call (a k-means in a notebook, a CLI run) would pay. In eager mode (not
compiling, no tracing or fake-tensor mode, plain tensors) a Stage runs its implementation itself,
under a torch.autograd.Function built from the same setup_context and backward that the custom op
registers, so both paths compute the same thing with the same code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _eager(args) -> bool:
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    for arg in args:
        for t in arg if isinstance(arg, (list, tuple)) else (arg,):
            if isinstance(t, torch.Tensor) and type(t) not in _PLAIN:
                return False  # FakeTensor, FunctionalTensor, DTensor, ...: the custom op knows them
    return True


def _flatten(args) -> tuple[list, list]:
    """Arguments with list-of-tensor entries spread out (autograd.Function sees only top-level
    tensors), and the length of each spread list (None for a plain argument)."""
    flat, spans = [], []
    for arg in args:
        if isinstance(arg, (list, tuple)) and arg and all(isinstance(t, torch.Tensor) for t in arg):
            flat.extend(arg)
            spans.append(len(arg))
        else:
            flat.append(arg)
            spans.append(None)
    return flat, spans


def _unflatten(flat, spans) -> list:
    args, i = [], 0
    for span in spans:
        if span is None:
            args.append(flat[i])
            i += 1
        else:
            args.append(list(flat[i : i + span]))
            i += span
    return args


class Stage:
    """latentops::<name>: `impl` (type-annotated: the schema comes from its hints), its `fake`
    (shapes and dtypes only) and, for a differentiable stage, `setup_context(ctx, inputs, output)`
    and `backward(ctx, *grads)` as torch.library.register_autograd takes them. Call the Stage;
    `custom_op` is the registered op (for opcheck)."""

    def __init__(
        self,
        name: str,
        impl: Callable,
        fake: Callable,
        *,
        setup_context: Callable | None = None,
        backward: Callable | None = None,
    ):
        self.impl = impl
        self.custom_op = torch.library.custom_op(f"latentops::{name}", impl, mutates_args=())
        self.custom_op.register_fake(fake)
        self._function = None
        if backward is not None:
            self.custom_op.register_autograd(backward, setup_context=setup_context)
            self._function = _eager_function(name, impl, setup_context, backward)

    def __call__(self, *args):
        if not _eager(args):
            return self.custom_op(*args)
        if self._function is None or not torch.is_grad_enabled():
            return self.impl(*args)
        flat, spans = _flatten(args)
        if not any(isinstance(t, torch.Tensor) and t.requires_grad for t in flat):
            return self.impl(*args)
        return self._function.apply(spans, *flat)


def _eager_function(name: str, impl: Callable, setup_context: Callable, backward: Callable) -> type:
    def forward(spans, *flat):
        return impl(*_unflatten(flat, spans))

    def setup(ctx, inputs, output):
        spans, *flat = inputs
        # The custom op's view: one entry per argument, a list of flags for a list of tensors.
        ctx.needs_input_grad = tuple(_unflatten(ctx.needs_input_grad[1:], spans))
        ctx.spans = spans
        setup_context(ctx, tuple(_unflatten(flat, spans)), output)

    def backward_flat(ctx, *grads):
        flat = []
        for grad, span in zip(backward(ctx, *grads), ctx.spans):
            if span is None:
                flat.append(grad)
            else:
                flat.extend([None] * span if grad is None else grad)
        return (None, *flat)

    return type(
        f"{name}_eager",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(forward),
            "setup_context": staticmethod(setup),
            "backward": staticmethod(backward_flat),
        },
    )
