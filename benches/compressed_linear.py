"""y = x·Wᵀ with W in the hcsr format (Huffman-coded CSR, decoded on the fly), and the decode alone:
latentops' backends against the same pruned matrix held dense (torch F.linear, fp32) and as CSR
(scipy.sparse, torch.sparse), every row checked against the float64 product first."""

from __future__ import annotations

import functools
import itertools

import torch

import latentops
from harness import Case, check_close, measure, timed_backends
from latentops import testing
from latentops.codecs import HcsrMatrix, encode_hcsr

ANCHORS = ["torch dense F.linear fp32", "scipy.sparse CSR", "torch.sparse CSR"]
BF16_ANCHOR = "torch dense F.linear bf16"
# The GPU's L2 to defeat (an H200 has ~60 MB; 64 MiB covers it and the H100's 50 MB).
L2_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def _weight(rows: int, cols: int, k: int, sparsity: float):
    """(hcsr weight, dense float32 W) of the sample: drawn once per process (sampling 8192² takes
    ~30 s: it sorts every magnitude), shared by the batch sizes."""
    gen = torch.Generator().manual_seed(0)
    codes, mask, codebook = testing.compressed_weight_sample(rows, cols, k, sparsity, generator=gen)
    weight = encode_hcsr(codes, mask, codebook)
    return weight, codebook[codes] * mask


def _describe_weight(weight, dense) -> str:
    args = weight.kernel_args()
    nnz = int(args["row_nnz"].sum())
    stream_mib = args["words"].numel() * 4 / 2**20
    return (
        f"{nnz / dense.numel():.1%} kept, {32 * args['words'].numel() / max(nnz, 1):.1f} bits per kept entry, "
        f"stream {stream_mib:.1f} MiB vs {dense.numel() * 4 / 2**20:.0f} MiB dense"
    )


def compressed_linear_case(rows: int, cols: int, k: int, sparsity: float, batch: int, device: str, quick: bool) -> Case:
    weight, dense = _weight(rows, cols, k, sparsity)
    nnz = int(weight.kernel_args()["row_nnz"].sum())
    case = Case(
        f"compressed_linear W {rows}x{cols}, {sparsity:.0%} pruned, k={k} Laplace levels, batch {batch} "
        f"({_describe_weight(weight, dense)}){', L2-cold' if device == 'cuda' else ''}; "
        "GFLOP/s counts the kept entries' FMAs",
        2.0 * nnz * batch,
        [ANCHORS[0], BF16_ANCHOR, ANCHORS[2]] if device == "cuda" else ANCHORS,
        family="compressed_linear",
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, cols, generator=gen).to(device)
    expected = x.double().cpu() @ dense.double().T
    budget = 0.3 if quick else 1.0
    # On a GPU every operand rotates through enough copies to exceed twice the L2 (a layer's weight
    # is cold in inference: the other layers ran in between); on the CPU one copy of each.
    copies = (lambda nbytes: max(2, -(-2 * L2_BYTES // nbytes))) if device == "cuda" else (lambda nbytes: 1)

    def run(name, fn, operands, tolerance=1e-5):
        cycle = itertools.cycle(operands)
        measure(
            case,
            name,
            lambda: fn(next(cycle)),
            device,
            check=lambda y: check_close("y", y, expected, tolerance),
            budget_s=budget,
        )

    stream_bytes = weight.nbytes
    weights = [weight] + [HcsrMatrix(weight.shape, weight.parts, weight.meta) for _ in range(copies(stream_bytes) - 1)]
    for backend in timed_backends(device, case):
        if backend == "torch" and device == "cuda":
            continue  # the reference decoder, 0.5 s a call on a GPU: no one's choice there
        run(f"latentops {backend}", lambda w, b=backend: latentops.compressed_linear(x, w, backend=b), weights)
    w32 = dense.to(device)
    run(
        ANCHORS[0],
        lambda w: torch.nn.functional.linear(x, w),
        [w32] + [w32.clone() for _ in range(copies(w32.nbytes) - 1)],
    )
    if device == "cuda":
        w16, x16 = w32.bfloat16(), x.bfloat16()
        bf16 = [w16] + [w16.clone() for _ in range(copies(w16.nbytes) - 1)]
        run(BF16_ANCHOR, lambda w: torch.nn.functional.linear(x16, w), bf16, tolerance=1e-2)
        del w32  # the fp32 copies are no longer needed on the device
    else:
        import scipy.sparse

        csr = scipy.sparse.csr_matrix(dense.numpy())
        x_t = x.numpy().T.copy()
        run(ANCHORS[1], lambda m: torch.from_numpy((m @ x_t).T), [csr])
    w_csr = dense.to(device).to_sparse_csr()
    csr_bytes = sum(t.nbytes for t in (w_csr.values(), w_csr.col_indices(), w_csr.crow_indices()))
    x_t = x.T.contiguous()
    run(ANCHORS[2], lambda m: (m @ x_t).T, [w_csr] + [w_csr.clone() for _ in range(copies(csr_bytes) - 1)])
    return case


def compressed_linear_decode_case(rows: int, cols: int, k: int, sparsity: float, device: str, quick: bool) -> Case:
    weight, dense = _weight(rows, cols, k, sparsity)
    args = weight.kernel_args()
    nnz = int(args["row_nnz"].sum())
    stream_bytes = args["words"].numel() * 4
    case = Case(
        f"hcsr decode to dense, W {rows}x{cols}, {sparsity:.0%} pruned, k={k} ({_describe_weight(weight, dense)})",
        0.0,
        ["torch dense copy of W"],
        family="compressed_linear",
    )
    print(case.title, flush=True)
    expected = dense.to(device)
    budget = 0.3 if quick else 1.0

    def throughput(out, ms):
        return f"{2 * nnz / ms / 1e6:.2f} G symbols/s, {stream_bytes / ms / 1e6:.2f} GB/s of stream"

    def exact(out):
        assert torch.equal(out, expected), "decoded W differs from the encoded one"
        return 0.0

    for backend in timed_backends(device, case):
        measure(
            case,
            f"latentops {backend}",
            lambda b=backend: latentops.decompress(weight, device=device, backend=b),
            device,
            check=exact,
            budget_s=budget,
            describe=throughput,
        )
    measure(case, "torch dense copy of W", lambda: expected.clone(), device, check=exact, budget_s=budget)
    return case
