"""Triton nearest-centroid search: argmin_k ‖z − c_k‖² and that distance, without an N×K matrix.

Each program owns BLOCK_N rows of z and sweeps the codebook in BLOCK_K chunks, scoring
‖c_k‖² − 2 z·c_k with tl.dot (D in BLOCK_D chunks) and keeping a running (min, argmin, second-min)
per row. The returned distance is always Σ_t (z_t − c_t)² of the chosen centroid in fp32, recomputed
directly (a gather of the chosen rows), never the cancelling expanded form.

float32 inputs are scored relative to the codebook mean μ (distances are shift-invariant), so data
far from the origin does not lose its digits to ‖z‖·‖c‖ in the expanded form, and scaled by a power
of two σ that brings the codebook's largest |c − μ| into [0.5, 1) (exact, and the argmin is
scale-invariant), so data around 1e-30 does not underflow in the products (every score 0, every row
"certified") and codebooks around 1e30 do not overflow in ‖c‖². fp16/bf16 inputs are scored
uncentered on their native tensor cores (exact products, fp32 accumulation).

exact=True: the distance dot runs in 3xTF32 (fp32 inputs) or native fp16/bf16 with fp32
accumulation, and every row gets a rigorous bound E on the error of each computed score. A row is
certain when the gap to the second-best score exceeds 2E (the argmin is the true one) or when 2E is
below 4e-6 of a lower bound on its true minimum distance (the pick is within that of the minimum).
Uncertain rows (near-ties, cancellation, non-finite values) are appended to a device-side list with
one atomic per program, and a second kernel rescores just those rows in direct form Σ (z − c)² in
float64 over all K, like the CPU kernel: exact differences and squares of fp32/fp16/bf16 values, no
overflow or underflow whatever their magnitude; distances within 2^-21 relative of each other count
as tied there (the merge key's precision), well inside the 1e-5 contract. No host sync: the rescore
grid covers N and programs beyond the list's length exit at once.

exact=False: tf32 (fp32 inputs) or native fp16/bf16 scores decide; no certification. Rows without a
finite best score (non-finite values, overflow) are rescored in both modes, so the NaN/inf policy
holds in both.

Ties go to the lowest index. A NaN score never beats a number (+inf included); a row with no number
gets index 0.
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_UNIT_ROUNDOFF = 2.0**-24  # fp32
_SAFETY = 2.0
# The pick is accepted without the second-best gap when 2E ≤ _REL_TOL · (lower bound on the true
# minimum): the contract is 1e-5 relative, the rest is left for the fp32 distance itself.
_REL_TOL = tl.constexpr(4e-6)
# fp32 distance dot in exact mode: 3xTF32 on tensor cores ("ieee" FMA dots were ~3x slower on the
# H100 for a tighter bound; _dot_error_units bounds the 3xTF32 dot only).
_EXACT_FP32_PRECISION = "tf32x3"
_INDEX_NONE = tl.constexpr(2**31 - 1)  # "no finite-or-inf score seen yet" in the running argmin

# Rescore: BLOCK_R flagged rows x BLOCK_K centroids per program on CUDA cores, the K range split
# over programs so a handful of flagged rows still fills the GPU; splits merge through an int64
# atomic_min on (top 32 bits of the float64 distance << 31 | index), which orders like (distance
# truncated to 21 mantissa bits, index) for distances ≥ 0 (index < 2^31).
_RESCORE_BLOCK_R = 16 if _INTERPRET else 32
_RESCORE_BLOCK_K = 32 if _INTERPRET else 128
_RESCORE_K_PER_SPLIT = 64 if _INTERPRET else 512  # small under the interpreter: tests the merge
_RESCORE_MAX_SPLITS = 16
_KEY_NONE = 0x7FFF_FFFF_FFFF_FFFF  # above every key, +inf's included (NaN distances make none)
_KEY_SHIFT = tl.constexpr(31)
_KEY_NONE_C = tl.constexpr(_KEY_NONE)


def _main_configs():
    if _INTERPRET:  # one small config: the interpreter pays per op, not per element
        return [triton.Config({"BLOCK_N": 32, "BLOCK_K": 32}, num_warps=4, num_stages=1)]
    if os.environ.get("LATENTOPS_TRITON_AUTOTUNE") != "1":
        # The autotuner chose this one for every shape tried on an H100 (fp32/fp16/bf16, D 64..513);
        # autotuning costs tens of seconds per new (K, D), so it is opt-in.
        return [triton.Config({"BLOCK_N": 64, "BLOCK_K": 128}, num_warps=4, num_stages=3)]
    return [
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 128}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 64}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 128}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 128}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    ]


@triton.jit
def _running_argmin_update(score, offs_k, k_mask, best, best_idx, second, TRACK_SECOND: tl.constexpr):
    """Merge one chunk of scores (BLOCK, BLOCK_K) into the running (min, argmin, second-min)."""
    is_nan = score != score
    valid = k_mask[None, :] & (~is_nan)
    clean = tl.where(valid, score, float("inf"))
    chunk_min = tl.min(clean, axis=1)
    # Lowest index attaining the minimum among valid entries (NaN never compares equal).
    hit = valid & (clean == chunk_min[:, None])
    chunk_idx = tl.min(tl.where(hit, offs_k[None, :], _INDEX_NONE), axis=1)
    if TRACK_SECOND:
        rest = tl.where(offs_k[None, :] == chunk_idx[:, None], float("inf"), clean)
        chunk_second = tl.min(rest, axis=1)
        second = tl.minimum(tl.maximum(best, chunk_min), tl.minimum(second, chunk_second))
    # Chunks arrive in increasing k, so on an equal score the earlier pick stays, unless there was
    # none yet (+inf scores from real infinities beat "nothing").
    take = (chunk_min < best) | ((chunk_min == best) & (chunk_idx < best_idx))
    best = tl.where(take, chunk_min, best)
    best_idx = tl.where(take, chunk_idx, best_idx)
    return best, best_idx, second


@triton.jit
def _chosen_sq_dist(z_rows, c_ptr, idx, row_mask, D, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
    """Σ_t (z_t − c_idx,t)² in fp32, direct (no cancellation): the distance every path reports."""
    chosen_rows = c_ptr + idx.to(tl.int64)[:, None] * D
    offs_d = tl.arange(0, BLOCK_D)
    dist = tl.zeros([BLOCK], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + offs_d
        m = row_mask[:, None] & (dd < D)[None, :]
        zz = tl.load(z_rows + dd[None, :], mask=m, other=0.0).to(tl.float32)
        cc = tl.load(chosen_rows + dd[None, :], mask=m, other=0.0).to(tl.float32)
        diff = zz - cc
        dist += tl.sum(diff * diff, axis=1)
    return dist


@triton.autotune(
    configs=_main_configs(), key=["K", "D", "EXACT", "CENTER", "PRECISION"], reset_to_zero=["flag_count_ptr"]
)
@triton.jit
def _nearest_centroid_kernel(
    z_ptr,
    c_ptr,
    c_score_ptr,
    c_sq_ptr,
    mu_ptr,
    scale_ptr,
    c_norm_max_ptr,
    idx_ptr,
    dist_ptr,
    flag_rows_ptr,
    flag_count_ptr,
    keys_ptr,
    N,
    K,
    D,
    coef_ab,
    coef_bb,
    coef_center,
    coef_abs,
    rel_zsq,
    EXACT: tl.constexpr,
    CENTER: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr,
    SINGLE_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """z (N, D); c (K, D) the codebook; c_score (K, D) what the dot sees ((c − μ)·σ for CENTER, else
    c); c_sq (K,) fp32 ‖c_score‖²; mu (D,) fp32 μ; scale (1,) fp32 σ; c_norm_max (1,) fp32 max finite
    ‖c_score‖. Scores, bounds and distances below are in the scaled units of c_score."""
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    z_rows = z_ptr + offs_n.to(tl.int64)[:, None] * D
    offs_d = tl.arange(0, BLOCK_D)
    offs_kb = tl.arange(0, BLOCK_K)
    if CENTER:
        scale = tl.load(scale_ptr)

    # ‖z_score‖² is only needed for the error bound.
    z_sq = tl.zeros([BLOCK_N], dtype=tl.float32)
    if SINGLE_D:
        d_mask = offs_d < D
        z_tile = tl.load(z_rows + offs_d[None, :], mask=n_mask[:, None] & d_mask[None, :], other=0.0)
        if CENTER:
            mu = tl.load(mu_ptr + offs_d, mask=d_mask, other=0.0)
            z_tile = tl.where(d_mask[None, :], (z_tile.to(tl.float32) - mu[None, :]) * scale, 0.0)
        if EXACT:
            z32 = z_tile.to(tl.float32)
            z_sq = tl.sum(z32 * z32, axis=1)
    elif EXACT:
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + offs_d
            dm = dd < D
            zc = tl.load(z_rows + dd[None, :], mask=n_mask[:, None] & dm[None, :], other=0.0).to(tl.float32)
            if CENTER:
                mu = tl.load(mu_ptr + dd, mask=dm, other=0.0)
                zc = tl.where(dm[None, :], (zc - mu[None, :]) * scale, 0.0)
            z_sq += tl.sum(zc * zc, axis=1)

    best = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
    second = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
    best_idx = tl.full([BLOCK_N], _INDEX_NONE, dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + offs_kb
        k_mask = offs_k < K
        c_rows = c_score_ptr + offs_k[:, None] * D
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        if SINGLE_D:
            c_tile = tl.load(c_rows + offs_d[None, :], mask=k_mask[:, None] & d_mask[None, :], other=0.0)
            acc = tl.dot(z_tile, tl.trans(c_tile), acc, input_precision=PRECISION)
        else:
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + offs_d
                dm = dd < D
                zc = tl.load(z_rows + dd[None, :], mask=n_mask[:, None] & dm[None, :], other=0.0)
                if CENTER:
                    mu = tl.load(mu_ptr + dd, mask=dm, other=0.0)
                    zc = tl.where(dm[None, :], (zc.to(tl.float32) - mu[None, :]) * scale, 0.0)
                cc = tl.load(c_rows + dd[None, :], mask=k_mask[:, None] & dm[None, :], other=0.0)
                acc = tl.dot(zc, tl.trans(cc), acc, input_precision=PRECISION)
        c_sq = tl.load(c_sq_ptr + offs_k, mask=k_mask, other=0.0)
        score = c_sq[None, :] - 2.0 * acc
        best, best_idx, second = _running_argmin_update(score, offs_k, k_mask, best, best_idx, second, EXACT)

    best_idx = tl.where(best_idx == _INDEX_NONE, 0, best_idx)

    dist = _chosen_sq_dist(z_rows, c_ptr, best_idx, n_mask, D, BLOCK_N, BLOCK_D)
    tl.store(idx_ptr + offs_n, best_idx.to(tl.int64), mask=n_mask)
    tl.store(dist_ptr + offs_n, dist, mask=n_mask)

    # A row without a finite best score (NaN or ±inf in z, a non-finite codebook, overflow) is
    # decided by the float64 rescore in both modes: the scores' inf − inf and 0·inf would
    # otherwise pick a centroid the NaN/inf policy does not (e.g. −inf for an infinite z).
    sure = (best > float("-inf")) & (best < float("inf"))
    if EXACT:
        # |computed − true| of every score (common ‖z‖² term aside) is at most err; see the
        # launcher for the coefficients. NaN/inf anywhere makes err or the tests fail: uncertain.
        z_norm = tl.sqrt(z_sq)
        c_norm_max = tl.load(c_norm_max_ptr)
        err = coef_ab * z_norm * c_norm_max + coef_bb * c_norm_max * c_norm_max + coef_abs
        if CENTER:
            err += coef_center * (z_norm + c_norm_max) * (z_norm + c_norm_max)
        sure_argmin = (second - best) > 2.0 * err
        min_dist_low = z_sq * (1.0 - rel_zsq) + best - err
        sure_close = (2.0 * err) <= _REL_TOL * min_dist_low
        sure = sure & (sure_argmin | sure_close)
    uncertain = (n_mask & ~sure).to(tl.int32)
    n_uncertain = tl.sum(uncertain, axis=0)
    if n_uncertain > 0:
        base = tl.atomic_add(flag_count_ptr, n_uncertain)
        slot = base + tl.cumsum(uncertain, axis=0) - uncertain
        tl.store(flag_rows_ptr + slot, offs_n, mask=uncertain != 0)
        # The rescore's atomic_min merge starts from "nothing found" (no fill over all N slots).
        tl.store(keys_ptr + slot, tl.full([BLOCK_N], _KEY_NONE_C, dtype=tl.int64), mask=uncertain != 0)


@triton.jit
def _nearest_centroid_rescore_kernel(
    z_ptr,
    c_t_ptr,
    keys_ptr,
    flag_rows_ptr,
    flag_count_ptr,
    K,
    D,
    K_PER_SPLIT,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
    D_GROUP: tl.constexpr,
):
    """Direct-form float64 argmin over centroids [k_begin, k_begin + K_PER_SPLIT) for the flagged
    rows in slots [pid0 · BLOCK_R, ...) of flag_rows[:flag_count]; c_t is the codebook transposed
    (D, K), unscaled and uncentered: float64 holds every difference and square of 16/32-bit floats."""
    start = tl.program_id(0) * BLOCK_R
    count = tl.load(flag_count_ptr)
    if start < count:
        k_begin = tl.program_id(1) * K_PER_SPLIT
        k_end = tl.minimum(k_begin + K_PER_SPLIT, K)
        slots = start + tl.arange(0, BLOCK_R)
        r_mask = slots < count
        rows = tl.load(flag_rows_ptr + slots, mask=r_mask, other=0)
        z_rows = z_ptr + rows.to(tl.int64) * D
        offs_kb = tl.arange(0, BLOCK_K)
        best = tl.full([BLOCK_R], float("inf"), dtype=tl.float64)
        best_idx = tl.full([BLOCK_R], _INDEX_NONE, dtype=tl.int32)
        for k0 in range(k_begin, k_end, BLOCK_K):
            offs_k = k0 + offs_kb
            k_mask = offs_k < k_end
            acc = tl.zeros([BLOCK_R, BLOCK_K], dtype=tl.float64)
            # Outer-product accumulation, no cross-thread reductions; D_GROUP-term partial sums
            # keep the rounding near (D_GROUP + D / D_GROUP) float64 ulps instead of D.
            for d0 in range(0, D, D_GROUP):
                part = tl.zeros([BLOCK_R, BLOCK_K], dtype=tl.float64)
                for j in tl.static_range(D_GROUP):
                    d = d0 + j
                    zc = tl.load(z_rows + d, mask=r_mask & (slots * 0 + d < D), other=0.0).to(tl.float64)
                    cc = tl.load(c_t_ptr + d * K + offs_k, mask=k_mask & (offs_k * 0 + d < D), other=0.0).to(tl.float64)
                    diff = zc[:, None] - cc[None, :]
                    part += diff * diff
                acc += part
            best, best_idx, _ = _running_argmin_update(acc, offs_k, k_mask, best, best_idx, best, False)
        found = r_mask & (best_idx != _INDEX_NONE)
        key = ((best.to(tl.int64, bitcast=True) >> _KEY_SHIFT) << _KEY_SHIFT) | best_idx.to(tl.int64)
        tl.atomic_min(keys_ptr + slots, key, mask=found)


@triton.jit
def _nearest_centroid_finalize_kernel(
    z_ptr,
    c_ptr,
    keys_ptr,
    flag_rows_ptr,
    flag_count_ptr,
    idx_ptr,
    dist_ptr,
    D,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Write the rescored index of each flagged row (0 where no distance was a number) and its
    direct fp32 distance."""
    start = tl.program_id(0) * BLOCK_R
    count = tl.load(flag_count_ptr)
    if start < count:
        slots = start + tl.arange(0, BLOCK_R)
        r_mask = slots < count
        rows = tl.load(flag_rows_ptr + slots, mask=r_mask, other=0)
        key = tl.load(keys_ptr + slots, mask=r_mask, other=_KEY_NONE_C)
        idx = tl.where(key < _KEY_NONE_C, (key & 0x7FFFFFFF).to(tl.int32), 0)
        z_rows = z_ptr + rows.to(tl.int64)[:, None] * D
        dist = _chosen_sq_dist(z_rows, c_ptr, idx, r_mask, D, BLOCK_R, BLOCK_D)
        tl.store(idx_ptr + rows, idx.to(tl.int64), mask=r_mask)
        tl.store(dist_ptr + rows, dist, mask=r_mask)


def _dot_error_units(dtype: torch.dtype, d: int) -> float:
    """Bound on |fl(z·c) − z·c| in units of 2^-24 · ‖z‖·‖c‖ for the exact-mode dot."""
    if dtype == torch.float32:
        # 3xTF32: dropped/rounded low parts ≤ 3·2^-20 per product, then 3D fp32 tensor-core
        # additions that may truncate (2 ulps each).
        return 6.0 * d + 64.0
    # fp16/bf16 products are exact in fp32; D tensor-core additions, 2 ulps each.
    return 2.0 * d + 4.0


def _power_of_two_scale(c_shifted: torch.Tensor) -> torch.Tensor:
    """σ (1,) fp32 = 2^-e with max|c − μ|·σ in [0.5, 1) over the finite rows (σ = 1 when that max
    is 0), on the device (no host sync). e is clamped so that σ stays a normal fp32 number; the
    largest scaled entry then still lies in [2^-24, 8), far from underflow and overflow of the
    products and of ‖c‖²."""
    _, exponent = torch.frexp(c_shifted.abs().amax().reshape(1))
    return torch.ldexp(torch.ones(1, device=c_shifted.device), -exponent.clamp(-125, 125))


def nearest_centroid_forward(
    z: torch.Tensor, codebook: torch.Tensor, accuracy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, D) and codebook (K, D): contiguous, same device, same dtype in {float32, float16,
    bfloat16}; N >= 0, K >= 1, D >= 1. accuracy: "exact" (certified: near-ties re-decided in fp32)
    or "fast" (tensor-core distances decide). Returns (indices int64 (N,), sq_dist float32 (N,))."""
    exact = accuracy == "exact"
    n, d = z.shape
    k = codebook.shape[0]
    indices = torch.empty(n, dtype=torch.int64, device=z.device)
    sq_dist = torch.empty(n, dtype=torch.float32, device=z.device)
    if n == 0:
        return indices, sq_dist

    center = z.dtype == torch.float32
    if center:
        # μ over finite entries only: one NaN/inf centroid must not poison the others' scores.
        finite = codebook.isfinite()
        mu = (codebook.where(finite, 0.0).sum(0, dtype=torch.float64) / finite.sum(0).clamp_min(1)).to(torch.float32)
        c_shifted = codebook - mu  # one fp32 rounding per entry, part of the error bound
        scale = _power_of_two_scale(c_shifted.where(finite.all(1, keepdim=True), 0.0))
        c_score = c_shifted * scale  # exact: a power of two
        c_sq64 = c_score.square().sum(1, dtype=torch.float64)
        precision = _EXACT_FP32_PRECISION if exact else "tf32"
    else:
        mu = scale = codebook  # unused placeholder pointers
        c_score = codebook
        c_sq64 = codebook.float().square().sum(1, dtype=torch.float64)
        precision = "tf32"  # ignored for fp16/bf16 operands: native tensor cores, fp32 accumulation
    c_sq = c_sq64.to(torch.float32)

    if exact:
        # Max over finite rows: a non-finite centroid scores inf/NaN and never wins a finite row.
        c_norm_max = (c_sq64.where(c_sq64.isfinite(), 0.0).max().sqrt() * (1 + 1e-6)).to(torch.float32)
        c_norm_max = c_norm_max.reshape(1)
    else:
        c_norm_max = c_sq  # unused placeholder pointer
    flag_rows = torch.empty(n, dtype=torch.int32, device=z.device)
    flag_count = torch.zeros(1, dtype=torch.int32, device=z.device)
    keys = torch.empty(n, dtype=torch.int64, device=z.device)  # flagged slots are set by the kernel

    # Error of each score s_k = ‖c_k‖² − 2 z·c_k, in units of ‖z‖·max‖c‖ and max‖c‖²:
    #   2·(dot error) + rounding of s_k (≤ u(‖c‖² + 2‖z‖‖c‖)) + ‖c‖² computed from an fp32 square
    #   (≤ 2u‖c‖²), and, when centered, the fp32 rounding of z − μ and c − μ, which moves
    #   ‖z − c‖² by ≤ 2u(‖z‖ + ‖c‖)² (+u²); plus an absolute term for the subnormal range. All
    #   times the safety factor.
    u = _UNIT_ROUNDOFF
    coef_ab = _SAFETY * u * (2.0 * _dot_error_units(z.dtype, d) + 2.0)
    coef_bb = _SAFETY * u * 3.0
    coef_center = _SAFETY * u * 2.0 * (1 + 1e-6)
    # The relative terms fail where products or sums leave fp32's normal range (fp16/bf16 data
    # near 1e-30 scores 0 everywhere, as did fp32 data before scaling): each rounding may also
    # lose up to the smallest normal number 2^-126 (a tensor core may flush subnormals), so such
    # rows are never certified and go to the float64 rescore.
    coef_abs = _SAFETY * 2.0**-126 * (2.0 * _dot_error_units(z.dtype, d) + 4.0)
    rel_zsq = (d + 2.0) * u * 2.0  # fp32 ‖z − μ‖² is low by at most this relative amount

    # Whole D in one chunk (z stays in registers across the K sweep) up to 64 fp32 / 128 16-bit
    # columns; beyond that fp32 tiles (3xTF32 keeps hi and lo parts) overflow shared memory.
    max_single_d = 64 if z.dtype == torch.float32 else 128
    block_d = max(16, triton.next_power_of_2(d)) if d <= max_single_d else 64
    if _INTERPRET:
        block_d = min(block_d, 32)
    single_d = d <= block_d

    device_guard = torch.cuda.device(z.device) if z.is_cuda else contextlib.nullcontext()
    with device_guard:
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
        _nearest_centroid_kernel[grid](
            z,
            codebook,
            c_score,
            c_sq,
            mu,
            scale,
            c_norm_max,
            indices,
            sq_dist,
            flag_rows,
            flag_count,
            keys,
            n,
            k,
            d,
            coef_ab,
            coef_bb,
            coef_center,
            coef_abs,
            rel_zsq,
            EXACT=exact,
            CENTER=center,
            PRECISION=precision,
            BLOCK_D=block_d,
            SINGLE_D=single_d,
        )
        # Launched over every possible slot: programs past flag_count exit at once (no host sync to
        # learn how many rows were flagged; "fast" flags only rows without a finite score).
        c_t = codebook.t().contiguous()
        splits = min(triton.cdiv(k, _RESCORE_K_PER_SPLIT), _RESCORE_MAX_SPLITS)
        k_per_split = triton.cdiv(triton.cdiv(k, splits), _RESCORE_BLOCK_K) * _RESCORE_BLOCK_K
        row_blocks = triton.cdiv(n, _RESCORE_BLOCK_R)
        _nearest_centroid_rescore_kernel[(row_blocks, splits)](
            z,
            c_t,
            keys,
            flag_rows,
            flag_count,
            k,
            d,
            k_per_split,
            BLOCK_R=_RESCORE_BLOCK_R,
            BLOCK_K=_RESCORE_BLOCK_K,
            D_GROUP=min(8, triton.next_power_of_2(d)),
            num_warps=4,
        )
        _nearest_centroid_finalize_kernel[(row_blocks,)](
            z,
            codebook,
            keys,
            flag_rows,
            flag_count,
            indices,
            sq_dist,
            d,
            BLOCK_R=_RESCORE_BLOCK_R,
            BLOCK_D=min(64, max(16, triton.next_power_of_2(d))),
            num_warps=4,
        )
    return indices, sq_dist
