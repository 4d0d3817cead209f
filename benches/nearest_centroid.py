"""Nearest-centroid search: latentops' backends against torch's expanded form, torch.cdist, FAISS
(CPU) and vector-quantize-pytorch (GPU), every row checked against the float64 reference."""

from __future__ import annotations

import math

import torch

import latentops
from harness import Case, Row, measure, tf32, timed_backends
from latentops import testing
from latentops.reference import nearest_centroid as reference


def torch_mm_argmin(z, c):
    return ((c * c).sum(1)[None, :] - 2 * z @ c.T).argmin(1)


def indices_checker(z: torch.Tensor, c: torch.Tensor, accuracy: str, pick=lambda out: out):
    """check(out): pick(out)'s indices choose a nearest centroid, to fp32 accuracy ("exact") or
    within tensor-core error of ‖z‖·‖c‖ ("fast"; bf16 and tf32 anchors too)."""
    best = reference.nearest_centroid(z, c)[1].double()
    scale = z.double().square().sum(1) + c.double().square().sum(1).max()
    slack = 1e-5 * best + 1e-9 * scale if accuracy == "exact" else 4e-3 * scale

    def check(out) -> float:
        idx = torch.as_tensor(pick(out)).reshape(-1).to(z.device).long()
        chosen = reference.squared_distance(z.double(), c.double()[idx])
        bad = int((chosen > best + slack).sum())
        assert bad == 0, f"{bad} of {len(idx)} rows not at a nearest centroid ({accuracy})"
        return float(((chosen - best) / scale).max())

    return check


def nearest_centroid_case(n: int, k: int, d: int, device: str, quick: bool) -> Case:
    case = Case(
        f"nearest centroid N={n} K={k} D={d}",
        2.0 * n * k * d,
        ["torch ‖c‖²−2zCᵀ+argmin fp32", "torch ‖c‖²−2zCᵀ+argmin bf16"],
        family="nearest_centroid",
    )
    print(case.title, flush=True)
    gen = torch.Generator().manual_seed(0)
    z, c = testing.nearest_centroid_sample(n, k, d, generator=gen, device=device)
    zb, cb = z.bfloat16(), c.bfloat16()
    budget = 0.3 if quick else 1.0
    checks = {
        "exact": indices_checker(z, c, "exact", pick=lambda out: out[0]),
        "fast": indices_checker(z, c, "fast", pick=lambda out: out[0]),
    }
    for backend in timed_backends(device, case):
        if backend == "torch" and device == "cuda":
            continue  # the float64 reference: 1.5 s a call on the GPU case, and no one's choice there
        for label, (zz, cc), accuracy in [
            ("fp32 exact", (z, c), "exact"),
            ("fp32 fast", (z, c), "fast"),
            ("bf16 fast", (zb, cb), "fast"),
        ]:
            if (device == "cpu" or backend == "torch") and label != "fp32 exact":
                continue  # the CPU kernels compute in fp32 and the reference in float64 whatever is asked
            measure(
                case,
                f"latentops {backend} {label}",
                lambda zz=zz, cc=cc, a=accuracy, b=backend: latentops.nearest_centroid(zz, cc, accuracy=a, backend=b),
                device,
                check=checks[accuracy],
                budget_s=budget,
            )
    measure(
        case,
        "torch.cdist+argmin fp32",
        lambda: torch.cdist(z, c).argmin(1),
        device,
        check=indices_checker(z, c, "fast"),
        budget_s=budget,
    )
    with tf32(False):
        measure(
            case,
            "torch ‖c‖²−2zCᵀ+argmin fp32",
            lambda: torch_mm_argmin(z, c),
            device,
            check=indices_checker(z, c, "fast"),
            budget_s=budget,
        )
    if device == "cuda":
        measure(
            case,
            "torch ‖c‖²−2zCᵀ+argmin bf16",
            lambda: torch_mm_argmin(zb, cb),
            device,
            check=indices_checker(z, c, "fast"),
            budget_s=budget,
        )
        _vector_quantize_pytorch(case, z, c, device, budget)
    else:
        case.anchors = ["faiss IndexFlatL2 k=1", "torch ‖c‖²−2zCᵀ+argmin fp32"]
        _faiss_search(case, z, c, budget)
    return case


def _vector_quantize_pytorch(case, z, c, device, budget):
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        case.add(Row("vector-quantize-pytorch eval fwd fp32", math.nan, None, None, "not installed"))
        return
    k, d = c.shape
    vq = VectorQuantize(dim=d, codebook_size=k, decay=0.99).to(device).eval()
    with torch.no_grad():  # the same codebook, so that its answer can be checked
        vq._codebook.embed.copy_(c[None])

    def forward():
        with torch.no_grad():
            return vq(z[None])

    measure(
        case,
        "vector-quantize-pytorch eval fwd fp32",
        forward,
        device,
        check=indices_checker(z, c, "fast", pick=lambda out: out[1]),
        budget_s=budget,
    )


def _faiss_search(case, z, c, budget):
    try:
        import faiss
    except ImportError:
        case.add(Row("faiss IndexFlatL2 k=1", math.nan, None, None, "not installed"))
        return
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c.numpy())
    zn = z.numpy()
    measure(
        case,
        "faiss IndexFlatL2 k=1",
        lambda: index.search(zn, 1),
        "cpu",
        check=indices_checker(z, c, "fast", pick=lambda out: out[1]),
        budget_s=budget,
    )
