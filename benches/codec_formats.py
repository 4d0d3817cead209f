"""ψ (compressed bytes / dense float32 bytes) of every format of latentops.codecs on one pruned and
shared matrix, beside the ICPR 2020 paper's closed forms and the entropy floor, with encode and
decode times. Every decode is checked bit for bit against the shared weight's dense().

    python benches/codec_formats.py [--size 8192] [--sparsity 0.95] [--k 32] [--method cws]

The floor: positions cost at least the entropy of the kept/pruned pattern, H(s)/s bits per kept
entry at density s if every entry is kept independently with probability s, and values at least the
entropy of the code histogram; a format near H(s)/s + H(codes) bits per kept entry has nothing left
to gain on such a matrix."""

from __future__ import annotations

import argparse
import math
import time

import torch

from latentops.codecs import (
    FORMATS,
    csc_paper_psi,
    encode,
    ham_paper_psi,
    prune_magnitude,
    quantize,
    sham_paper_psi,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--method", default="cws")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    n = args.size
    gen = torch.Generator().manual_seed(args.seed)
    # Laplace weights, as trained layers' look
    weight = torch.empty(n, n).exponential_(generator=gen) * (torch.randint(0, 2, (n, n), generator=gen) * 2 - 1)
    start = time.perf_counter()
    shared = quantize(weight, args.k, method=args.method, mask=prune_magnitude(weight, args.sparsity), seed=args.seed)
    quantize_s = time.perf_counter() - start
    dense = shared.dense()
    kept = int(shared.mask.sum())
    s = kept / dense.numel()
    position_bits = -(s * math.log2(s) + (1 - s) * math.log2(1 - s)) / s if 0 < s < 1 else 0.0
    value_bits = shared.entropy()
    floor_psi = (position_bits + value_bits) * kept / 8 / (4 * dense.numel())
    k = shared.codebook.numel()

    print(
        f"W {n}x{n} Laplace, {args.sparsity:.0%} pruned by magnitude ({kept} kept), {args.method} with k = {args.k} "
        f"({k} levels used; {quantize_s:.1f} s). Entropy floor: {position_bits:.2f} bits of position + "
        f"{value_bits:.2f} bits of value per kept entry = ψ {floor_psi:.4f}.\n"
    )
    paper = {
        "ham": ham_paper_psi((n, n), k + 1),
        "sham": sham_paper_psi((n, n), kept, k),
        "csc": csc_paper_psi((n, n), kept),
    }
    print("| format | bytes | ψ measured | bits per kept entry | ψ by the paper's formula | encode (s) | decode (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in FORMATS:
        start = time.perf_counter()
        matrix = encode(shared, format=name)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        decoded = matrix.decode()
        decode_s = time.perf_counter() - start
        assert torch.equal(decoded, dense), f"{name} does not decode to the encoded matrix"
        formula = f"{paper[name]:.4f}" if name in paper else ""
        if name == "sham":
            formula += f" ({sham_paper_psi((n, n), kept, k, corrected=True):.4f} with all row indices)"
        print(
            f"| {name} | {matrix.nbytes:,} | {matrix.psi:.4f} | {8 * matrix.nbytes / kept:.2f} | {formula} "
            f"| {encode_s:.1f} | {decode_s:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
