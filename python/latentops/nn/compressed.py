"""CompressedLinear and CompressedConv2d: frozen inference layers whose weight is an hcsr matrix
(latentops.codecs), multiplied on its compressed form by latentops.compressed_linear; the dense
weight is never built.

Where the weight lives. The matrix's parts (the format's bytes: stream, row tables, code lengths,
codebook) are buffers, so state_dict holds exactly the compressed form, and they stay on the CPU
whatever .to() says: the kernels read the matrix's kernel arguments (HcsrMatrix.kernel_args), which
the layer builds on the device it is moved to, once, outside any torch.compile trace. Moving the
parts themselves as well would keep a second copy of the stream on the device for nothing. The bias
is an ordinary buffer and follows .to() (device and dtype).

A state_dict may hold another matrix of the same layer shape (a different sparsity or codebook, so
parts of other lengths): load_state_dict validates it (CorruptedFileError on a malformed one) and
swaps it in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from latentops.codecs.hcsr import HcsrMatrix, encode_hcsr
from latentops.codecs.quantizers import prune_and_quantize
from latentops.ops.checks import check_choice, check_int, check_tensor
from latentops.ops.compressed_linear import compressed_linear, decompress

_PARTS = tuple(HcsrMatrix.part_dtypes)
_META = "weight_meta"  # int64 [rows, cols, escape, escape_bits]
_BACKENDS = ("cpu", "cuda", "triton", "torch")


def quantize_for_compression(
    weight: torch.Tensor, *, k: int | None = None, method: str = "cws", sparsity: float = 0.0, seed: int = 0, **options
):
    """The quantizer path of from_module (weight=None): `weight` pruned by magnitude to `sparsity`
    (latentops.codecs.prune_magnitude), then shared into at most k levels by `method`
    (latentops.codecs.quantize with seed and options)."""
    if k is None:
        raise TypeError("from_module needs either weight (an HcsrMatrix or SharedWeights) or k (to quantize)")
    return prune_and_quantize(weight, k, sparsity=sparsity, method=method, seed=seed, **options)


def _as_matrix(weight, shape: tuple[int, ...], name: str = "weight") -> HcsrMatrix:
    """An HcsrMatrix of shape (shape[0], prod(shape[1:])) from an HcsrMatrix, or from anything with
    codes, codebook and mask of `shape` (or already 2-D)."""
    rows, cols = shape[0], int(torch.Size(shape[1:]).numel())
    if isinstance(weight, HcsrMatrix):
        matrix = weight
    elif all(hasattr(weight, field) for field in ("codes", "codebook", "mask")):
        codes, mask = weight.codes, weight.mask
        if tuple(codes.shape) not in (tuple(shape), (rows, cols)) or tuple(mask.shape) != tuple(codes.shape):
            raise ValueError(
                f"{name}'s codes and mask must have the layer's weight shape {tuple(shape)} or ({rows}, {cols}), "
                f"got codes {tuple(codes.shape)} and mask {tuple(mask.shape)}"
            )
        matrix = encode_hcsr(codes.reshape(rows, cols), mask.reshape(rows, cols), weight.codebook)
    else:
        raise TypeError(
            f"{name} must be an HcsrMatrix or an object with codes, codebook and mask (SharedWeights), "
            f"got {type(weight).__name__}"
        )
    if matrix.shape != (rows, cols):
        raise ValueError(f"{name} must be a ({rows}, {cols}) matrix for this layer, got {matrix.shape}")
    return matrix


def _module_matrix(module: nn.Module, weight, quantize_options: dict) -> HcsrMatrix:
    """from_module's weight: `weight` as given, or module.weight quantized with quantize_options."""
    if weight is None:
        weight = quantize_for_compression(module.weight.detach(), **quantize_options)
    elif quantize_options:
        raise TypeError(f"quantize options {sorted(quantize_options)} apply only without a weight")
    return _as_matrix(weight, tuple(module.weight.shape))


class _CompressedWeight(nn.Module):
    """The shared part of the compressed layers: the matrix's parts as CPU buffers, the bias, the
    device-side kernel arguments, state_dict loading of another matrix."""

    def __init__(self, weight: HcsrMatrix, bias: torch.Tensor | None, backend: str | None):
        super().__init__()
        self.backend = check_choice("backend", backend, _BACKENDS, optional=True)
        rows = weight.shape[0]
        if bias is not None:
            check_tensor("bias", bias)
            if tuple(bias.shape) != (rows,):
                raise ValueError(f"bias must have shape ({rows},) (the output units), got {tuple(bias.shape)}")
            bias = bias.detach().clone()
        self._set_matrix(weight)
        self.register_buffer("bias", bias)

    def _set_matrix(self, matrix: HcsrMatrix) -> None:
        for name in _PARTS:
            self.register_buffer(f"weight_{name}", matrix.parts[name])
        meta = [*matrix.shape, matrix.meta["escape"], matrix.meta["escape_bits"]]
        self.register_buffer(_META, torch.tensor(meta, dtype=torch.int64))
        self._matrix = matrix
        # built here, eagerly, on the device the layer was last moved to: not inside a compile trace
        matrix.kernel_args(getattr(self, "_device", torch.device("cpu")))

    @property
    def weight(self) -> HcsrMatrix:
        """The compressed weight (its parts are this layer's weight_* buffers)."""
        return self._matrix

    @property
    def weight_nbytes(self) -> int:
        """Bytes of the compressed weight (the format's parts and meta; the bias not included)."""
        return self._matrix.nbytes

    def _apply(self, fn, recurse=True):
        # The parts stay on the CPU (see the module docstring); the target device is what fn does
        # to an empty tensor, and the kernel arguments are built there now.
        names = list(self._buffers)
        kept = {name: self._buffers.pop(name) for name in (*(f"weight_{n}" for n in _PARTS), _META)}
        try:
            super()._apply(fn, recurse)
        finally:
            others = dict(self._buffers)
            self._buffers.clear()
            self._buffers.update({name: kept[name] if name in kept else others[name] for name in names})
        self._device = fn(torch.empty(0)).device
        self._matrix.kernel_args(self._device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errs):
        keys = {name: f"{prefix}weight_{name}" for name in _PARTS}
        if all(key in state_dict for key in keys.values()) and prefix + _META in state_dict:
            meta = [int(v) for v in state_dict[prefix + _META].tolist()]
            if len(meta) != 4:
                raise ValueError(f"{prefix + _META} must hold [rows, cols, escape, escape_bits], got {meta}")
            if tuple(meta[:2]) != self._matrix.shape:
                raise ValueError(
                    f"{prefix}weight: the state_dict's matrix is {tuple(meta[:2])}, this layer's {self._matrix.shape}"
                )
            parts = {name: state_dict[key].detach().cpu().clone() for name, key in keys.items()}
            matrix = HcsrMatrix.from_parts(meta[:2], parts, dict(escape=meta[2], escape_bits=meta[3]))
            self._set_matrix(matrix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errs)

    def _linear(self, x: torch.Tensor) -> torch.Tensor:
        return compressed_linear(x, self._matrix, self.bias, backend=self.backend)

    def _repr_weight(self) -> str:
        return f"bias={self.bias is not None}, nbytes={self.weight_nbytes}, psi={self._matrix.psi:.4g}"


class CompressedLinear(_CompressedWeight):
    """y = x·Wᵀ + b with W an hcsr matrix (out_features, in_features), frozen (gradients reach x).

    Args:
        weight: the HcsrMatrix (latentops.codecs.encode_hcsr).
        bias: None or (out_features,) float tensor (copied).
        backend: the kernel latentops.compressed_linear runs (None: its default choice).
    """

    def __init__(self, weight: HcsrMatrix, bias: torch.Tensor | None = None, *, backend: str | None = None):
        if not isinstance(weight, HcsrMatrix):
            raise TypeError(f"weight must be an HcsrMatrix, got {type(weight).__name__}; see from_module")
        self.out_features, self.in_features = weight.shape
        super().__init__(weight, bias, backend)

    @classmethod
    def from_module(
        cls, module: nn.Linear, weight=None, *, backend: str | None = None, **quantize_options
    ) -> CompressedLinear:
        """The compressed layer of `module` (an nn.Linear; its bias is copied): weight is an
        HcsrMatrix or an object with codes, codebook and mask (SharedWeights) of module.weight's
        shape; None runs quantize_for_compression(module.weight, **quantize_options)."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"module must be an nn.Linear, got {type(module).__name__}")
        matrix = _module_matrix(module, weight, quantize_options)
        return cls(matrix, module.bias, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._linear(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self._repr_weight()}"


class CompressedConv2d(_CompressedWeight):
    """A frozen nn.Conv2d (groups = 1, zero padding) whose weight (out, in, kh, kw) is held as the
    hcsr matrix (out, in·kh·kw).

    Two ways to apply it (`method`):
        "decode" (default): latentops.decompress then F.conv2d; the dense weight exists only during
            the call. Decoding is cheap (0.1 ms for 64→128 3×3 at 95% sparsity on the CPU) and
            the dense convolution is the fastest product there is.
        "unfold": F.unfold then latentops.compressed_linear on the patches; the dense weight is
            never built, but the patch matrix (batch·H·W, in·kh·kw) is, and on a CPU building it
            costs several times the whole dense convolution (measured 2026-11-30, 2-core x86:
            64→128 3×3 on 32×32, batch 8, 95% sparse, 1 thread: 115 ms against 24 ms).

    Args:
        weight: the HcsrMatrix of the flattened weight (out_channels, in_channels·kh·kw).
        bias: None or (out_channels,).
        in_channels, kernel_size, stride, padding, dilation: as nn.Conv2d (padding an int, a pair,
            "valid" or "same").
        backend: as CompressedLinear (the decode's backend with method="decode").
        method: "decode" or "unfold" (above).
    """

    def __init__(
        self,
        weight: HcsrMatrix,
        bias: torch.Tensor | None = None,
        *,
        in_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        backend: str | None = None,
        method: str = "decode",
    ):
        if not isinstance(weight, HcsrMatrix):
            raise TypeError(f"weight must be an HcsrMatrix, got {type(weight).__name__}; see from_module")
        self.method = check_choice("method", method, ("decode", "unfold"))
        self.in_channels = check_int("in_channels", in_channels)
        self.kernel_size = _pair_of("kernel_size", kernel_size, 1)
        self.stride = _pair_of("stride", stride, 1)
        self.dilation = _pair_of("dilation", dilation, 1)
        if isinstance(padding, str):
            check_choice("padding", padding, ("valid", "same"))
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = _pair_of("padding", padding, 0)
        self.out_channels = weight.shape[0]
        kh, kw = self.kernel_size
        if weight.shape[1] != self.in_channels * kh * kw:
            raise ValueError(
                f"weight must be (out_channels, in_channels·kh·kw) = (…, {self.in_channels * kh * kw}), "
                f"got {weight.shape}"
            )
        super().__init__(weight, bias, backend)

    @classmethod
    def from_module(
        cls, module: nn.Conv2d, weight=None, *, backend: str | None = None, method: str = "decode", **quantize_options
    ) -> CompressedConv2d:
        """The compressed layer of `module` (an nn.Conv2d with groups = 1 and zero padding):
        weight is an HcsrMatrix of (out, in·kh·kw) or an object with codes, codebook and mask of
        module.weight's 4-D shape (or flattened); None runs quantize_for_compression."""
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"module must be an nn.Conv2d, got {type(module).__name__}")
        if module.groups != 1:
            raise ValueError(f"module.groups must be 1 (grouped convolutions are not supported), got {module.groups}")
        if module.padding_mode != "zeros":
            raise ValueError(f"module.padding_mode must be 'zeros', got {module.padding_mode!r}")
        matrix = _module_matrix(module, weight, quantize_options)
        return cls(
            matrix,
            module.bias,
            in_channels=module.in_channels,
            kernel_size=module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            backend=backend,
            method=method,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"x must be (batch, {self.in_channels}, H, W) or ({self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        height, width = x.shape[-2:]
        low = [0, 0] if self.padding in ("valid", "same") else self.padding
        if self.padding != "same" and any(
            size + 2 * p < d * (k - 1) + 1
            for size, p, d, k in zip((height, width), low, self.dilation, self.kernel_size)
        ):
            raise ValueError(f"x's spatial size {(height, width)} is smaller than the (dilated) kernel")
        y = self._unfold_product(x) if self.method == "unfold" else self._decode_conv(x)
        return y.squeeze(0) if unbatched else y

    def _decode_conv(self, x: torch.Tensor) -> torch.Tensor:
        dense = decompress(self._matrix, device=x.device, backend=self.backend)
        dense = dense.to(x.dtype).reshape(self.out_channels, self.in_channels, *self.kernel_size)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, dense, bias, self.stride, self.padding, self.dilation)

    def _unfold_product(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            # as nn.Conv2d: total d·(k − 1) per side pair, the extra one on the right/bottom
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            x = F.pad(x, (totals[1] // 2, totals[1] - totals[1] // 2, totals[0] // 2, totals[0] - totals[0] // 2))
            padding = (0, 0)
        batch, _, height, width = x.shape
        out_h, out_w = (
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip((height, width), padding, self.dilation, self.kernel_size, self.stride)
        )
        columns = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=padding, stride=self.stride)
        y = self._linear(columns.transpose(1, 2))  # (batch, out_h·out_w, out_channels)
        return y.transpose(1, 2).reshape(batch, self.out_channels, out_h, out_w)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, method={self.method!r}, {self._repr_weight()}"
        )


def _pair_of(name: str, value, minimum: int) -> tuple[int, int]:
    pair = _pair(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(check_int(name, v, minimum=minimum) for v in pair)
