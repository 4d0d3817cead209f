"""SharedWeights: a weight tensor stored as codes into a small codebook plus a pruning mask, the form
every quantizer of latentops.codecs returns and every compressed format (HAM, sHAM) encodes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# int32 codes: 65,536 levels (the largest k the quantizers take) need more than int16; int64 would
# double the memory of a layer-sized code tensor for nothing.
CODES_DTYPE = torch.int32


@dataclass(frozen=True, eq=False)
class SharedWeights:
    """A weight W with W[i] = codebook[codes[i]] where mask[i], and exactly 0.0 where not.

    Fields (validated on construction; a wrong one raises TypeError/ValueError naming it):
        codes: integer tensor of W's shape, each in [0, k); stored as int32. Pruned entries carry a
            code too (the quantizers give them 0) but it is never used.
        codebook: 1-D (k,) finite float tensor, k ≥ 1; stored as float32.
        mask: bool tensor of W's shape, True where the weight is kept.
    All three on one device. eq=False: tensors have no single truth value, so compare fields.
    """

    codes: torch.Tensor
    codebook: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        codes, codebook, mask = self.codes, self.codebook, self.mask
        for name, value in (("codes", codes), ("codebook", codebook), ("mask", mask)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if not codebook.dtype.is_floating_point:
            raise TypeError(f"codebook must be a float tensor, got {codebook.dtype}")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = kept), got {mask.dtype}")
        if codebook.dim() != 1 or codebook.numel() == 0:
            raise ValueError(f"codebook must be 1-D (k,) with k ≥ 1, got shape {tuple(codebook.shape)}")
        if mask.shape != codes.shape:
            raise ValueError(f"mask must have codes' shape {tuple(codes.shape)}, got {tuple(mask.shape)}")
        devices = {codes.device, codebook.device, mask.device}
        if len(devices) > 1:
            raise ValueError(
                f"codes, codebook and mask must be on one device, got {codes.device}, {codebook.device}, {mask.device}"
            )
        codebook = codebook.detach().to(torch.float32)
        if not bool(torch.isfinite(codebook).all()):
            raise ValueError("codebook must be finite (in float32), got a NaN or ±inf entry")
        k = codebook.numel()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise ValueError(f"codes must lie in [0, k = {k}), got values in [{int(codes.min())}, {int(codes.max())}]")
        # frozen: the normalized tensors go in through object.__setattr__.
        object.__setattr__(self, "codes", codes.detach().to(CODES_DTYPE))
        object.__setattr__(self, "codebook", codebook)
        object.__setattr__(self, "mask", mask.detach())

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    @property
    def k(self) -> int:
        """The number of codebook entries."""
        return self.codebook.numel()

    @property
    def device(self) -> torch.device:
        return self.codes.device

    def dense(self) -> torch.Tensor:
        """W as a float32 tensor. torch.where, not a product with the mask: a pruned entry is +0.0
        whatever its code points at (a product would give −0.0 for a −0.0 codeword)."""
        return torch.where(self.mask, self.codebook[self.codes], 0.0)

    def to(self, device: torch.device | str) -> SharedWeights:
        return SharedWeights(self.codes.to(device), self.codebook.to(device), self.mask.to(device))

    def entropy(self) -> float:
        """Bits per kept weight: the entropy of the histogram of the kept entries' codes, i.e. what
        an ideal entropy coder spends per nonzero (0.0 without kept entries or with one code)."""
        counts = torch.bincount(self.codes[self.mask].long(), minlength=self.k).double()
        total = counts.sum()
        if total == 0:
            return 0.0
        p = counts[counts > 0] / total
        return max(0.0, float(-(p * torch.log2(p)).sum()))

    def __repr__(self) -> str:
        kept = int(self.mask.sum())
        return (
            f"SharedWeights(shape={tuple(self.shape)}, k={self.k}, kept={kept}/{self.mask.numel()}, "
            f"device={self.device})"
        )


__all__ = ["CODES_DTYPE", "SharedWeights"]
