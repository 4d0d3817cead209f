"""Sample inputs of the ops, one place for the tests and the benchmarks: odd shapes (1, 3, 17,
130: never a multiple of a block), every dtype, non-contiguous layouts, empty batches.

Every sampler draws from the given torch.Generator on the CPU (so a seed reproduces the inputs on
any device), then casts and moves; `layout` makes the result non-contiguous with the same values."""

from __future__ import annotations

import torch

from latentops.kernel_enums import PrecisionLayout

# The dtypes the kernels take; float64 runs on the torch reference.
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("contiguous", "transposed", "strided")

# (N, K, D) of the nearest-centroid and soft-quantization tests: odd sizes, a single row, a single
# centroid, D = 1 and D > 128 (several D chunks). The Triton interpreter runs the small ones.
NEAREST_CENTROID_SHAPES = [(1, 1, 1), (37, 5, 3), (130, 1000, 17), (1031, 17, 130), (3, 1000, 1)]
NEAREST_CENTROID_INTERPRETER_SHAPES = [(1, 1, 1), (37, 5, 3), (19, 40, 17), (7, 5, 130)]
SOFT_QUANTIZE_SHAPES = [(1, 1, 1), (37, 5, 3), (130, 1000, 17), (1031, 17, 130)]
SOFT_QUANTIZE_INTERPRETER_SHAPES = [(1, 1, 1), (13, 5, 3), (70, 37, 17)]
# (n, layer widths, k) of the graph tests: several layers of different widths in one call, k = None
# for the dense graph.
GRAPH_SHAPES = [(17, (33, 5, 64), 4), (130, (65, 17), 10), (37, (5,), None)]
GRAPH_INTERPRETER_SHAPES = [(13, (7, 3), 3), (19, (21,), None)]


def rows(
    n: int,
    d: int,
    *,
    generator: torch.Generator,
    dtype=torch.float32,
    device="cpu",
    offset: float = 0.0,
    scale: float = 1.0,
    layout: str = "contiguous",
    requires_grad: bool = False,
) -> torch.Tensor:
    """(n, d) standard normal rows × scale + offset (offset: data far from the origin, where the
    expanded ‖a‖² + ‖b‖² − 2a·b cancels)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    values = torch.randn(n, d, generator=generator, dtype=torch.float64) * scale + offset
    values = values.to(device=device, dtype=dtype)
    if layout == "transposed":  # stride (1, n)
        values = values.T.contiguous().T
    elif layout == "strided":  # every other column of a (n, 2d) buffer
        buffer = torch.zeros(n, 2 * d, device=device, dtype=dtype)
        buffer[:, ::2] = values
        values = buffer[:, ::2]
    return values.requires_grad_(requires_grad)


def nearest_centroid_sample(n: int, k: int, d: int, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (n, d), codebook (k, d)); options as for rows()."""
    return rows(n, d, **options), rows(k, d, **options)


def soft_quantize_sample(
    n: int,
    k: int,
    d: int,
    *,
    precision_layout: PrecisionLayout | None = None,
    log_prior: bool = False,
    generator: torch.Generator,
    **options,
):
    """(z, codebook, precision, log_prior) with precision ~ 8/D (so posteriors are not one-hot:
    their gradients would vanish and only rounding would be compared) as a float (None) or a
    float64-drawn tensor in the given layout; log_prior (k,) or None."""
    z = rows(n, d, generator=generator, **options)
    codebook = rows(k, d, generator=generator, **options)
    acc = {"device": z.device, "dtype": torch.float64 if z.dtype == torch.float64 else torch.float32}
    shape = {
        None: None,
        PrecisionLayout.SCALAR: (),
        PrecisionLayout.PER_ROW: (n, 1),
        PrecisionLayout.PER_CENTROID: (1, k),
        PrecisionLayout.FULL: (n, k),
    }[precision_layout]
    precision = 8.0 / d
    if shape is not None:
        precision = ((torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5) * precision).to(**acc)
    prior = torch.randn(k, generator=generator, dtype=torch.float64).to(**acc) if log_prior else None
    return z, codebook, precision, prior


def graph_sample(n: int, widths, classes: int, *, generator: torch.Generator, soft_labels: bool = False, **options):
    """(layers: a list of (n, d) tensors, one per width; labels: (n,) int64 classes, or (n, classes)
    soft labels in the layers' dtype, uniform in [0, 1))."""
    layers = [rows(n, d, generator=generator, **options) for d in widths]
    if soft_labels:
        labels = torch.rand(n, classes, generator=generator, dtype=torch.float64)
        labels = labels.to(device=layers[0].device, dtype=layers[0].dtype).requires_grad_(layers[0].requires_grad)
    else:
        labels = torch.randint(0, classes, (n,), generator=generator).to(layers[0].device)
    return layers, labels


# (rows, cols, k, sparsity): odd sizes; k = 1 (0-bit value codes); long sparse rows (escaped gaps);
# an all-zero and a fully dense matrix; more than 65,536 rows.
COMPRESSED_LINEAR_SHAPES = [
    (1, 1, 1, 0.0),
    (3, 17, 5, 0.5),
    (130, 67, 32, 0.95),
    (17, 3000, 1024, 0.99),
    (37, 130, 256, 0.0),
    (5, 9, 4, 1.0),
    (70_000, 3, 3, 0.5),
]
COMPRESSED_LINEAR_INTERPRETER_SHAPES = [(1, 1, 1, 0.0), (3, 17, 5, 0.5), (33, 67, 32, 0.95), (5, 9, 4, 1.0)]


def compressed_weight_sample(rows: int, cols: int, k: int, sparsity: float, *, generator: torch.Generator):
    """(codes, mask, codebook) of a trained-looking pruned and shared weight: Laplace weights, the
    `sparsity` fraction of smallest magnitudes pruned, each kept weight rounded to the nearest of
    k uniform levels over the kept range (every level used where k allows)."""
    weight = torch.empty(rows, cols, dtype=torch.float64).exponential_(generator=generator)
    weight *= torch.randint(0, 2, (rows, cols), generator=generator) * 2 - 1
    removed = round(sparsity * weight.numel())
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[weight.abs().reshape(-1).argsort()[:removed]] = False
    mask = mask.reshape(rows, cols)
    kept = weight[mask]
    low, high = (kept.min().item(), kept.max().item()) if kept.numel() else (0.0, 0.0)
    codebook = torch.linspace(low, high, k, dtype=torch.float64).to(torch.float32)
    codes = ((weight - low) / max(high - low, 1e-30) * (k - 1)).round().clamp(0, k - 1).to(torch.int64)
    return codes, mask, codebook
