"""registration.Stage: the eager path (a direct call under an autograd.Function) and the custom-op
path (torch.compile, tracing, opcheck) compute the same values and gradients, list arguments
included, and the backward sees the same needs_input_grad on both."""

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from latentops.ops.registration import Stage

seen_needs_grad = []


def _impl(xs: list[torch.Tensor], w: torch.Tensor, scale: float) -> torch.Tensor:
    return sum(x.sum(0) for x in xs) * w * scale


def _fake(xs, w, scale):
    return w.new_empty(w.shape)


def _setup(ctx, inputs, output):
    xs, w, scale = inputs
    ctx.n, ctx.scale = len(xs), scale
    ctx.save_for_backward(*xs, w)


def _backward(ctx, grad):
    *xs, w = ctx.saved_tensors
    seen_needs_grad.append(tuple(ctx.needs_input_grad))
    total = sum(x.sum(0) for x in xs)
    grads_x = [(grad * w * ctx.scale).expand_as(x) for x in xs]
    return grads_x, grad * total * ctx.scale if ctx.needs_input_grad[1] else None, None


toy = Stage("test_registration_toy", _impl, _fake, setup_context=_setup, backward=_backward)


def _inputs(w_requires_grad=True):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 4, generator=gen, dtype=torch.float64, requires_grad=True) for n in (3, 5)]
    return xs, torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=w_requires_grad)


def test_eager_and_custom_op_paths_agree():
    results = []
    for call in (toy, toy.custom_op):
        for w_requires_grad in (True, False):
            seen_needs_grad.clear()
            xs, w = _inputs(w_requires_grad)
            out = call(xs, w, 0.5)
            out.backward(torch.arange(4.0, dtype=torch.float64))
            results.append((out.detach(), [x.grad for x in xs], w.grad, seen_needs_grad[0]))
    eager, eager_no_w, custom, custom_no_w = results
    for a, b in [(eager, custom), (eager_no_w, custom_no_w)]:
        torch.testing.assert_close(a[0], b[0])
        for ga, gb in zip(a[1], b[1], strict=True):
            torch.testing.assert_close(ga, gb)
        assert (a[2] is None) == (b[2] is None) and (a[2] is None or torch.equal(a[2], b[2]))
        assert a[3] == b[3]  # one entry per argument: a list of flags for the list of tensors
    assert eager[3] == ([True, True], True, False) and eager_no_w[3] == ([True, True], False, False)


def test_gradcheck_on_both_paths():
    xs, w = _inputs()
    for call in (toy, toy.custom_op):
        assert torch.autograd.gradcheck(lambda a, b, w, call=call: call([a, b], w, 0.5), (*xs, w))


def test_fake_tensors_take_the_custom_op_path():
    with FakeTensorMode():
        out = toy([torch.empty(3, 4), torch.empty(5, 4)], torch.empty(4), 0.5)
    assert out.shape == (4,)


def test_no_grad_and_plain_inputs_skip_autograd():
    xs, w = _inputs()
    with torch.no_grad():
        assert toy(xs, w, 0.5).grad_fn is None
    assert toy([x.detach() for x in xs], w.detach(), 0.5).grad_fn is None
    assert type(toy(xs, w, 0.5).grad_fn).__name__.startswith("test_registration_toy_eager")
