"""Triton posterior-mean soft quantization (Wu & Flierl, AAAI 2020), flash-attention style.

    l_nk = −½·s_nk·‖z_n − c_k‖² + b_k,   p = softmax_k(l),   ẑ_n = Σ_k p_nk c_k,   lse_n = logsumexp_k l_nk

Forward: each program owns BLOCK_N rows and sweeps the codebook in BLOCK_K chunks with an online
(max, sum) softmax, scoring z·cᵀ and accumulating p·C with tl.dot; only lse (N,) is kept.

Backward (FlashAttention-2 split, no atomics, deterministic), with g = dL/dẑ, δ_n = g_n·ẑ_n and
a_nk = p_nk (g_n·c_k − δ_n), p recomputed tile by tile as exp(l − lse):
  * a row kernel (programs over row blocks, sweeping K) writes
        grad_z_n = Σ_k a_nk s_nk c_k − (Σ_k a_nk s_nk) z_n
    and dL/ds for the scalar / per-row / full layouts (per-row partials; the full layout is written
    tile by tile, it is N×K by definition);
  * a centroid kernel (programs over centroid blocks, sweeping N) writes
        grad_c_k = Σ_n p_nk g_n + Σ_n a_nk s_nk z_n − (Σ_n a_nk s_nk) c_k,
    grad_b_k = Σ_n a_nk and dL/ds for the per-centroid layout.
Extra memory: the centred codebook (K×D, plus a 16-bit copy for 16-bit inputs) and O(N + K).

Numerics. Distances are shift-invariant, so everything runs relative to the codebook mean μ:
z̃ = z − μ, c̃ = c − μ, ‖z̃ − c̃‖² = ‖z̃‖² + ‖c̃‖² − 2 z̃·c̃ (clamped at 0), ẑ = Σ p c̃ + μ and
g·c_k − δ_n = g·c̃_k − g·(ẑ_n − μ); data far from the origin then does not lose its digits to the
expanded form. float32 dots run in 3xTF32 for accuracy="exact" (fp32-accurate, ~1e-5 relative)
and in one tf32 product for accuracy="fast" (~3e-4).
float16/bfloat16 inputs: the distance dot runs uncentred on native tensor cores (raw z and c: exact
products, fp32 accumulation; centring would round z − μ to 16 bits, a 5e-4 relative error in every
distance, far worse than the fp32 cancellation it saves unless the data sits far from 0); the
value dots (p·C, a·C, pᵀ·g, aᵀ·z̃) run in tf32 on centred fp32 operands, because a·s is unbounded
and would overflow fp16.

The backward never trusts the forward's lse for p (see the row kernel): it recomputes the row max
and sum, which costs one more sweep over K but keeps p accurate when |l| is large.

Masked columns get logit −inf; the running max is replaced by 0 when it is still −inf before it
meets arithmetic, so exp(−inf − m) = 0 and no −inf − (−inf) appears (a log prior may hold −inf).
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

from latentops.kernel_enums import PrecisionLayout

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

_SCALAR = tl.constexpr(int(PrecisionLayout.SCALAR))
_PER_ROW = tl.constexpr(int(PrecisionLayout.PER_ROW))
_PER_CENTROID = tl.constexpr(int(PrecisionLayout.PER_CENTROID))
_FULL = tl.constexpr(int(PrecisionLayout.FULL))
# tl.dot input precision of float32 operands per accuracy (16-bit operands ignore it).
_DOT_PRECISION = {"exact": "tf32x3", "fast": "tf32"}


# ---------------------------------------------------------------------------------------------
# shared pieces


@triton.jit
def _dist_dots(
    z_rows,
    g_rows,
    cd_rows,
    cv_rows,
    mu_ptr,
    row_mask,
    col_mask,
    D,
    NEED_G: tl.constexpr,
    SAME_C: tl.constexpr,
    DIST_PRECISION: tl.constexpr,
    VALUE_PRECISION: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Over D in BLOCK_D chunks: z·cᵀ of the distance operands (centred fp32 if SAME_C, raw 16-bit
    otherwise), g·c̃ᵀ (fp32 operands, if NEED_G) and ‖z‖² of the distance operand. z_rows/g_rows
    (BLOCK_R, 1) and cd_rows/cv_rows (BLOCK_C, 1) are row pointers; cv holds c̃ in fp32."""
    offs_d = tl.arange(0, BLOCK_D)
    zc = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
    gc = tl.zeros([BLOCK_R, BLOCK_C], dtype=tl.float32)
    z_sq = tl.zeros([BLOCK_R], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + offs_d
        dm = dd < D
        zm = row_mask[:, None] & dm[None, :]
        cm = col_mask[:, None] & dm[None, :]
        zr = tl.load(z_rows + dd[None, :], mask=zm, other=0.0)
        ct = tl.load(cd_rows + dd[None, :], mask=cm, other=0.0)
        if SAME_C:  # fp32: centred operands
            mu = tl.load(mu_ptr + dd, mask=dm, other=0.0)
            zd = tl.where(dm[None, :], zr - mu[None, :], 0.0)
        else:  # 16-bit: raw operands, exact products
            zd = zr
        zd32 = zd.to(tl.float32)
        z_sq += tl.sum(zd32 * zd32, axis=1)
        zc = tl.dot(zd, tl.trans(ct), zc, input_precision=DIST_PRECISION)
        if NEED_G:
            gt = tl.load(g_rows + dd[None, :], mask=zm, other=0.0)
            if SAME_C:
                cv = ct
            else:
                cv = tl.load(cv_rows + dd[None, :], mask=cm, other=0.0)
            gc = tl.dot(gt, tl.trans(cv), gc, input_precision=VALUE_PRECISION)
    return zc, gc, z_sq


@triton.jit
def _logits(
    zc, z_sq, c_sq, s_ptr, b_ptr, offs_n, offs_k, n_mask, k_mask, K, S_LAYOUT: tl.constexpr, HAS_PRIOR: tl.constexpr
):
    """(squared distance, s, logit) tiles; masked columns get logit −inf."""
    dist = tl.maximum(z_sq[:, None] + c_sq[None, :] - 2.0 * zc, 0.0)
    if S_LAYOUT == _SCALAR:
        s = tl.load(s_ptr + offs_n * 0, mask=n_mask, other=1.0)[:, None] + tl.zeros_like(dist)
    elif S_LAYOUT == _PER_ROW:
        s = tl.load(s_ptr + offs_n, mask=n_mask, other=1.0)[:, None] + tl.zeros_like(dist)
    elif S_LAYOUT == _PER_CENTROID:
        s = tl.load(s_ptr + offs_k, mask=k_mask, other=1.0)[None, :] + tl.zeros_like(dist)
    else:
        s_idx = offs_n.to(tl.int64)[:, None] * K + offs_k[None, :]
        s = tl.load(s_ptr + s_idx, mask=n_mask[:, None] & k_mask[None, :], other=1.0)
    logit = -0.5 * s * dist
    if HAS_PRIOR:
        b = tl.load(b_ptr + offs_k, mask=k_mask, other=0.0)
        logit += b[None, :]
    logit = tl.where(k_mask[None, :], logit, float("-inf"))
    return dist, s, logit


# ---------------------------------------------------------------------------------------------
# forward


@triton.jit
def _soft_quantize_forward_kernel(
    z_ptr,
    cd_ptr,
    cv_ptr,
    c_sq_ptr,
    mu_ptr,
    s_ptr,
    b_ptr,
    z_hat_ptr,
    lse_ptr,
    N,
    K,
    D,
    S_LAYOUT: tl.constexpr,
    HAS_PRIOR: tl.constexpr,
    SINGLE_D: tl.constexpr,
    SAME_C: tl.constexpr,
    DIST_PRECISION: tl.constexpr,
    VALUE_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    """Rows [pid0·BLOCK_N, ...), output columns [pid1·BLOCK_DV, ...) of ẑ (all of D if SINGLE_D)."""
    pid_n = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    z_rows = z_ptr + offs_n.to(tl.int64)[:, None] * D
    offs_kb = tl.arange(0, BLOCK_K)
    offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
    v_mask = offs_v < D
    mu_v = tl.load(mu_ptr + offs_v, mask=v_mask, other=0.0)

    if SINGLE_D:  # z̃ stays in registers for the whole sweep
        zr = tl.load(z_rows + offs_v[None, :], mask=n_mask[:, None] & v_mask[None, :], other=0.0)
        if SAME_C:
            zd = tl.where(v_mask[None, :], zr - mu_v[None, :], 0.0)
        else:
            zd = zr
        zd32 = zd.to(tl.float32)
        z_sq_single = tl.sum(zd32 * zd32, axis=1)

    m_i = tl.full([BLOCK_N], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + offs_kb
        k_mask = offs_k < K
        c_off = offs_k.to(tl.int64)[:, None] * D
        if SINGLE_D:
            cm = k_mask[:, None] & v_mask[None, :]
            cdt = tl.load(cd_ptr + c_off + offs_v[None, :], mask=cm, other=0.0)
            zc = tl.dot(zd, tl.trans(cdt), input_precision=DIST_PRECISION)
            z_sq = z_sq_single
            if SAME_C:
                cvt = cdt
            else:
                cvt = tl.load(cv_ptr + c_off + offs_v[None, :], mask=cm, other=0.0)
        else:
            zc, _unused, z_sq = _dist_dots(
                z_rows,
                z_rows,
                cd_ptr + c_off,
                cv_ptr + c_off,
                mu_ptr,
                n_mask,
                k_mask,
                D,
                False,
                SAME_C,
                DIST_PRECISION,
                VALUE_PRECISION,
                BLOCK_N,
                BLOCK_K,
                BLOCK_D,
            )
            cvt = tl.load(cv_ptr + c_off + offs_v[None, :], mask=k_mask[:, None] & v_mask[None, :], other=0.0)
        c_sq = tl.load(c_sq_ptr + offs_k, mask=k_mask, other=0.0)
        _dist, _s, logit = _logits(zc, z_sq, c_sq, s_ptr, b_ptr, offs_n, offs_k, n_mask, k_mask, K, S_LAYOUT, HAS_PRIOR)
        m_new = tl.maximum(m_i, tl.max(logit, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(logit - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p, cvt, acc, input_precision=VALUE_PRECISION)
        m_i = m_new

    z_hat = acc / l_i[:, None] + mu_v[None, :]
    out_rows = offs_n.to(tl.int64)[:, None] * D
    tl.store(z_hat_ptr + out_rows + offs_v[None, :], z_hat, mask=n_mask[:, None] & v_mask[None, :])
    if pid_v == 0:
        tl.store(lse_ptr + offs_n, m_i + tl.log(l_i), mask=n_mask)


# ---------------------------------------------------------------------------------------------
# backward


@triton.jit
def _soft_quantize_backward_delta_kernel(
    grad_ptr, z_hat_ptr, mu_ptr, delta_ptr, N, D, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr
):
    """δ̃_n = g_n·(ẑ_n − μ): the centred δ, so that g·c̃_k − δ̃_n does not cancel μ's digits."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    rows = offs_n.to(tl.int64)[:, None] * D
    offs_d = tl.arange(0, BLOCK_D)
    delta = tl.zeros([BLOCK_N], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + offs_d
        dm = dd < D
        m = n_mask[:, None] & dm[None, :]
        g = tl.load(grad_ptr + rows + dd[None, :], mask=m, other=0.0)
        zh = tl.load(z_hat_ptr + rows + dd[None, :], mask=m, other=0.0)
        mu = tl.load(mu_ptr + dd, mask=dm, other=0.0)
        delta += tl.sum(g * tl.where(m, zh - mu[None, :], 0.0), axis=1)
    tl.store(delta_ptr + offs_n, delta, mask=n_mask)


@triton.jit
def _rows_tile(
    z_ptr,
    grad_ptr,
    cd_ptr,
    cv_ptr,
    c_sq_ptr,
    mu_ptr,
    s_ptr,
    b_ptr,
    rows,
    offs_n,
    n_mask,
    offs_k,
    k_mask,
    offs_v,
    v_mask,
    zd,
    gt,
    z_sq_single,
    K,
    D,
    S_LAYOUT: tl.constexpr,
    HAS_PRIOR: tl.constexpr,
    SINGLE_D: tl.constexpr,
    SAME_C: tl.constexpr,
    DIST_PRECISION: tl.constexpr,
    VALUE_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One (rows × centroids) tile of the row kernel: distances, s, logits, g·c̃ and the c̃ value
    tile."""
    c_off = offs_k.to(tl.int64)[:, None] * D
    if SINGLE_D:
        cm = k_mask[:, None] & v_mask[None, :]
        cdt = tl.load(cd_ptr + c_off + offs_v[None, :], mask=cm, other=0.0)
        if SAME_C:
            cvt = cdt
        else:
            cvt = tl.load(cv_ptr + c_off + offs_v[None, :], mask=cm, other=0.0)
        zc = tl.dot(zd, tl.trans(cdt), input_precision=DIST_PRECISION)
        gc = tl.dot(gt, tl.trans(cvt), input_precision=VALUE_PRECISION)
        z_sq = z_sq_single
    else:
        zc, gc, z_sq = _dist_dots(
            z_ptr + rows,
            grad_ptr + rows,
            cd_ptr + c_off,
            cv_ptr + c_off,
            mu_ptr,
            n_mask,
            k_mask,
            D,
            True,
            SAME_C,
            DIST_PRECISION,
            VALUE_PRECISION,
            BLOCK_N,
            BLOCK_K,
            BLOCK_D,
        )
        cvt = tl.load(cv_ptr + c_off + offs_v[None, :], mask=k_mask[:, None] & v_mask[None, :], other=0.0)
    c_sq = tl.load(c_sq_ptr + offs_k, mask=k_mask, other=0.0)
    dist, s, logit = _logits(zc, z_sq, c_sq, s_ptr, b_ptr, offs_n, offs_k, n_mask, k_mask, K, S_LAYOUT, HAS_PRIOR)
    return dist, s, logit, gc, cvt


@triton.jit
def _soft_quantize_backward_rows_kernel(
    z_ptr,
    grad_ptr,
    cd_ptr,
    cv_ptr,
    c_sq_ptr,
    mu_ptr,
    s_ptr,
    b_ptr,
    delta_ptr,
    m_ptr,
    inv_l_ptr,
    grad_z_ptr,
    grad_s_ptr,
    N,
    K,
    D,
    S_LAYOUT: tl.constexpr,
    HAS_PRIOR: tl.constexpr,
    NEED_GRAD_S: tl.constexpr,
    SINGLE_D: tl.constexpr,
    SAME_C: tl.constexpr,
    DELTA_PASS: tl.constexpr,
    DIST_PRECISION: tl.constexpr,
    VALUE_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    """grad_z for rows [pid0·BLOCK_N, ...), columns [pid1·BLOCK_DV, ...). grad_s: per-row sums
    −½ Σ_k a d (scalar and per-row layouts; the launcher sums them for the scalar) or the full
    (N, K) tile; written by the pid1 = 0 programs only.

    p_nk = exp(l_nk − m_n)·inv_l_n. DELTA_PASS: a first sweep recomputes the softmax statistics
    (row max m, 1/Σ exp(l − m)) and δ_n = Σ_k p_nk (g·c̃_k) online, and writes them for the centroid
    kernel. Two reasons, both about large |l| (large s or far data): the forward's lse carries an
    absolute fp32 error u·|lse| that exp(l − lse) turns into a relative error of every p (1e-5 at
    |lse| ~ 100), while l − m is exact at the max; and δ from the very g·c̃ values it is subtracted
    from makes g·c̃_k − δ_n cancel exactly on one-hot rows, where g·(ẑ − μ) from the rounded
    stored ẑ leaves ~1e-7·|g||c| (FlashAttention's rowsum(dO∘O) has both flaws). Costs two more
    dots per tile. Without it, m = lse, inv_l = 1 and δ = g·(ẑ − μ) come from the launcher."""
    pid_n = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    rows = offs_n.to(tl.int64)[:, None] * D
    offs_kb = tl.arange(0, BLOCK_K)
    offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
    v_mask = offs_v < D
    nv_mask = n_mask[:, None] & v_mask[None, :]
    mu_v = tl.load(mu_ptr + offs_v, mask=v_mask, other=0.0)
    zr = tl.load(z_ptr + rows + offs_v[None, :], mask=nv_mask, other=0.0)
    zt = tl.where(v_mask[None, :], zr.to(tl.float32) - mu_v[None, :], 0.0)  # z̃, fp32
    gt = tl.load(grad_ptr + rows + offs_v[None, :], mask=nv_mask, other=0.0)
    if SAME_C:
        zd = zt
    else:
        zd = zr
    zd32 = zd.to(tl.float32)
    z_sq_single = tl.sum(zd32 * zd32, axis=1)  # used only when SINGLE_D

    if DELTA_PASS:
        m_i = tl.full([BLOCK_N], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_N], dtype=tl.float32)
        delta = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + offs_kb
            k_mask = offs_k < K
            _dist, _s, logit, gc, _cvt = _rows_tile(
                z_ptr,
                grad_ptr,
                cd_ptr,
                cv_ptr,
                c_sq_ptr,
                mu_ptr,
                s_ptr,
                b_ptr,
                rows,
                offs_n,
                n_mask,
                offs_k,
                k_mask,
                offs_v,
                v_mask,
                zd,
                gt,
                z_sq_single,
                K,
                D,
                S_LAYOUT,
                HAS_PRIOR,
                SINGLE_D,
                SAME_C,
                DIST_PRECISION,
                VALUE_PRECISION,
                BLOCK_N,
                BLOCK_K,
                BLOCK_D,
            )
            m_new = tl.maximum(m_i, tl.max(logit, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_safe)
            e = tl.exp(logit - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(e, axis=1)
            delta = delta * alpha + tl.sum(e * gc, axis=1)
            m_i = m_new
        inv_l = 1.0 / l_i
        delta = delta * inv_l
        if pid_v == 0:
            tl.store(delta_ptr + offs_n, delta, mask=n_mask)
            tl.store(m_ptr + offs_n, m_i, mask=n_mask)
            tl.store(inv_l_ptr + offs_n, inv_l, mask=n_mask)
    else:
        delta = tl.load(delta_ptr + offs_n, mask=n_mask, other=0.0)
        m_i = tl.load(m_ptr + offs_n, mask=n_mask, other=0.0)
        inv_l = tl.load(inv_l_ptr + offs_n, mask=n_mask, other=1.0)

    acc = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    acc_w = tl.zeros([BLOCK_N], dtype=tl.float32)
    gs = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + offs_kb
        k_mask = offs_k < K
        dist, s, logit, gc, cvt = _rows_tile(
            z_ptr,
            grad_ptr,
            cd_ptr,
            cv_ptr,
            c_sq_ptr,
            mu_ptr,
            s_ptr,
            b_ptr,
            rows,
            offs_n,
            n_mask,
            offs_k,
            k_mask,
            offs_v,
            v_mask,
            zd,
            gt,
            z_sq_single,
            K,
            D,
            S_LAYOUT,
            HAS_PRIOR,
            SINGLE_D,
            SAME_C,
            DIST_PRECISION,
            VALUE_PRECISION,
            BLOCK_N,
            BLOCK_K,
            BLOCK_D,
        )
        p = tl.exp(logit - m_i[:, None]) * inv_l[:, None]
        a = p * (gc - delta[:, None])
        a_s = a * s
        acc_w += tl.sum(a_s, axis=1)
        acc = tl.dot(a_s, cvt, acc, input_precision=VALUE_PRECISION)
        if NEED_GRAD_S:
            gs_tile = -0.5 * a * dist
            if S_LAYOUT == _FULL:
                if pid_v == 0:
                    s_idx = offs_n.to(tl.int64)[:, None] * K + offs_k[None, :]
                    tl.store(grad_s_ptr + s_idx, gs_tile, mask=n_mask[:, None] & k_mask[None, :])
            elif S_LAYOUT != _PER_CENTROID:
                gs += tl.sum(gs_tile, axis=1)

    grad_z = acc - acc_w[:, None] * zt
    tl.store(grad_z_ptr + rows + offs_v[None, :], grad_z, mask=nv_mask)
    if NEED_GRAD_S and (S_LAYOUT == _SCALAR or S_LAYOUT == _PER_ROW):  # noqa: SIM102, SIM109 (Triton: constexpr tests)
        if pid_v == 0:
            tl.store(grad_s_ptr + offs_n, gs, mask=n_mask)


@triton.jit
def _soft_quantize_backward_centroids_kernel(
    z_ptr,
    grad_ptr,
    cd_ptr,
    cv_ptr,
    c_sq_ptr,
    mu_ptr,
    s_ptr,
    b_ptr,
    delta_ptr,
    m_ptr,
    inv_l_ptr,
    grad_c_ptr,
    grad_s_ptr,
    grad_b_ptr,
    N,
    K,
    D,
    S_LAYOUT: tl.constexpr,
    HAS_PRIOR: tl.constexpr,
    NEED_GRAD_S: tl.constexpr,
    NEED_GRAD_B: tl.constexpr,
    SINGLE_D: tl.constexpr,
    SAME_C: tl.constexpr,
    DIST_PRECISION: tl.constexpr,
    VALUE_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    """grad_c for centroids [pid0·BLOCK_K, ...), columns [pid1·BLOCK_DV, ...); grad_b and the
    per-centroid grad_s (written by the pid1 = 0 programs only)."""
    pid_k = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    k_mask = offs_k < K
    c_off = offs_k.to(tl.int64)[:, None] * D
    offs_nb = tl.arange(0, BLOCK_N)
    offs_v = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
    v_mask = offs_v < D
    kv_mask = k_mask[:, None] & v_mask[None, :]
    mu_v = tl.load(mu_ptr + offs_v, mask=v_mask, other=0.0)
    cvt = tl.load(cv_ptr + c_off + offs_v[None, :], mask=kv_mask, other=0.0)  # c̃, fp32
    if SINGLE_D:
        if SAME_C:
            cdt = cvt
        else:
            cdt = tl.load(cd_ptr + c_off + offs_v[None, :], mask=kv_mask, other=0.0)
    c_sq = tl.load(c_sq_ptr + offs_k, mask=k_mask, other=0.0)

    acc = tl.zeros([BLOCK_K, BLOCK_DV], dtype=tl.float32)
    acc_w = tl.zeros([BLOCK_K], dtype=tl.float32)
    gb = tl.zeros([BLOCK_K], dtype=tl.float32)
    gs = tl.zeros([BLOCK_K], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + offs_nb
        n_mask = offs_n < N
        rows = offs_n.to(tl.int64)[:, None] * D
        nv_mask = n_mask[:, None] & v_mask[None, :]
        zr = tl.load(z_ptr + rows + offs_v[None, :], mask=nv_mask, other=0.0)
        zt = tl.where(v_mask[None, :], zr.to(tl.float32) - mu_v[None, :], 0.0)  # z̃, fp32
        gt = tl.load(grad_ptr + rows + offs_v[None, :], mask=nv_mask, other=0.0)
        if SINGLE_D:
            if SAME_C:
                zd = zt
            else:
                zd = zr
            zd32 = zd.to(tl.float32)
            z_sq = tl.sum(zd32 * zd32, axis=1)
            zc = tl.dot(zd, tl.trans(cdt), input_precision=DIST_PRECISION)
            gc = tl.dot(gt, tl.trans(cvt), input_precision=VALUE_PRECISION)
        else:
            zc, gc, z_sq = _dist_dots(
                z_ptr + rows,
                grad_ptr + rows,
                cd_ptr + c_off,
                cv_ptr + c_off,
                mu_ptr,
                n_mask,
                k_mask,
                D,
                True,
                SAME_C,
                DIST_PRECISION,
                VALUE_PRECISION,
                BLOCK_N,
                BLOCK_K,
                BLOCK_D,
            )
        delta = tl.load(delta_ptr + offs_n, mask=n_mask, other=0.0)
        m_i = tl.load(m_ptr + offs_n, mask=n_mask, other=0.0)
        inv_l = tl.load(inv_l_ptr + offs_n, mask=n_mask, other=0.0)
        dist, s, logit = _logits(zc, z_sq, c_sq, s_ptr, b_ptr, offs_n, offs_k, n_mask, k_mask, K, S_LAYOUT, HAS_PRIOR)
        # Padding rows must contribute nothing, whatever exp(logit − 0) would be there.
        p = tl.where(n_mask[:, None], tl.exp(logit - m_i[:, None]) * inv_l[:, None], 0.0)
        a = p * (gc - delta[:, None])
        a_s = a * s
        acc = tl.dot(tl.trans(p), gt, acc, input_precision=VALUE_PRECISION)
        acc = tl.dot(tl.trans(a_s), zt, acc, input_precision=VALUE_PRECISION)
        acc_w += tl.sum(a_s, axis=0)
        if NEED_GRAD_B:
            gb += tl.sum(a, axis=0)
        if NEED_GRAD_S and S_LAYOUT == _PER_CENTROID:
            gs += tl.sum(-0.5 * a * dist, axis=0)

    grad_c = acc - acc_w[:, None] * cvt
    tl.store(grad_c_ptr + c_off + offs_v[None, :], grad_c, mask=kv_mask)
    if pid_v == 0:
        if NEED_GRAD_B:
            tl.store(grad_b_ptr + offs_k, gb, mask=k_mask)
        if NEED_GRAD_S and S_LAYOUT == _PER_CENTROID:
            tl.store(grad_s_ptr + offs_k, gs, mask=k_mask)


# ---------------------------------------------------------------------------------------------
# launchers


def _d_blocks(dtype: torch.dtype, d: int) -> tuple[int, int, bool]:
    """(BLOCK_D reduction chunk, BLOCK_DV output chunk, SINGLE_D). SINGLE_D: all of D in one
    block, z̃ (and g) held in registers for the whole sweep, one program per row block."""
    full = max(16, triton.next_power_of_2(d))
    if _INTERPRET:  # small chunks: the interpreter pays per op, and odd D exercises the D loops
        single_max, chunk, out_chunk = 32, 32, 32
    elif dtype == torch.float32:
        single_max, chunk, out_chunk = 64, 64, 128
    else:
        single_max, chunk, out_chunk = 128, 64, 128
    if full <= single_max:
        return full, full, True
    return chunk, min(out_chunk, full), False


# (BLOCK_N, BLOCK_K, num_warps, num_stages) per kernel. GPU defaults chosen for
# N=65536 K=4096 D=64 fp32 (to be tuned on an H100). The interpreter pays per tile, not per element:
# small tiles (the masks and loops get exercised) unless the codebook is large.
def _config(kernel: str, single_d: bool, k: int) -> tuple[int, int, int, int]:
    if _INTERPRET:
        return 16, max(16, min(1024, triton.next_power_of_2(k) // 16)), 1, 1
    if kernel == "forward":
        return (128, 64, 8, 2) if single_d else (64, 64, 4, 2)
    if kernel == "rows":
        return 64, 64, 4, 2
    return 64, 64, 4, 2  # centroids


def _precisions(dtype: torch.dtype, accuracy: str) -> tuple[str, str]:
    if dtype == torch.float32:
        return _DOT_PRECISION[accuracy], _DOT_PRECISION[accuracy]
    # 16-bit distance operands: native tensor cores (the setting is ignored for them); value
    # dots take fp32 operands in tf32.
    return "tf32", "tf32"


def _prepare(z: torch.Tensor, codebook: torch.Tensor):
    """Codebook mean μ (fp32), c̃ = c − μ in fp32 (value dots), the distance operand (c̃ for fp32,
    the raw codebook for 16-bit) and its squared norms (fp32)."""
    mu = codebook.mean(0, dtype=torch.float64).to(torch.float32).contiguous()
    c_val = (codebook.float() - mu).contiguous()
    c_dist = c_val if codebook.dtype == torch.float32 else codebook
    c_sq = c_dist.double().square().sum(1).to(torch.float32)
    return mu, c_val, c_dist, c_sq


def _device_guard(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def soft_quantize_forward(
    z: torch.Tensor,
    codebook: torch.Tensor,
    s: torch.Tensor,
    s_layout: int,
    log_prior: torch.Tensor | None,
    accuracy: str = "exact",
) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, D), codebook (K, D): contiguous, same device and dtype in {float32, float16,
    bfloat16}, K ≥ 1, D ≥ 1. s: float32 contiguous, (1,) for s_layout 0 (scalar), (N,) for 1 (per
    row), (K,) for 2 (per centroid), (N, K) for 3 (full). log_prior: float32 (K,) or None (zeros).
    accuracy (float32 inputs only): "exact" (3xTF32, fp32-accurate) or "fast" (one tf32 product).
    Returns z_hat float32 (N, D) and lse float32 (N,)."""
    n, d = z.shape
    k = codebook.shape[0]
    z_hat = torch.empty((n, d), dtype=torch.float32, device=z.device)
    lse = torch.empty((n,), dtype=torch.float32, device=z.device)
    if n == 0:
        return z_hat, lse
    mu, c_val, c_dist, c_sq = _prepare(z, codebook)
    dist_prec, value_prec = _precisions(z.dtype, accuracy)
    block_d, block_dv, single_d = _d_blocks(z.dtype, d)
    block_n, block_k, warps, stages = _config("forward", single_d, k)
    has_prior = log_prior is not None
    b = log_prior if has_prior else c_sq  # placeholder pointer when absent
    with _device_guard(z):
        _soft_quantize_forward_kernel[(triton.cdiv(n, block_n), triton.cdiv(d, block_dv))](
            z,
            c_dist,
            c_val,
            c_sq,
            mu,
            s,
            b,
            z_hat,
            lse,
            n,
            k,
            d,
            S_LAYOUT=s_layout,
            HAS_PRIOR=has_prior,
            SINGLE_D=single_d,
            SAME_C=z.dtype == torch.float32,
            DIST_PRECISION=dist_prec,
            VALUE_PRECISION=value_prec,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            BLOCK_D=block_d,
            BLOCK_DV=block_dv,
            num_warps=warps,
            num_stages=stages,
        )
    return z_hat, lse


def soft_quantize_backward(
    grad: torch.Tensor,
    z: torch.Tensor,
    codebook: torch.Tensor,
    s: torch.Tensor,
    s_layout: int,
    log_prior: torch.Tensor | None,
    z_hat: torch.Tensor,
    lse: torch.Tensor,
    accuracy: str,
    need_grad_s: bool,
    need_grad_log_prior: bool,
    *,
    delta_pass: bool = True,
):
    """grad float32 (N, D) = dL/dz_hat; the other arguments as for soft_quantize_forward, plus
    its outputs z_hat and lse. Returns grad_z (N, D) float32, grad_codebook (K, D) float32, grad_s
    in s's shape float32 (None unless need_grad_s) and grad_log_prior (K,) float32 (None unless
    need_grad_log_prior).

    delta_pass (default True): δ_n = Σ_k p_nk g·c_k from its own sweep over K in the row kernel
    (exact cancellation on one-hot rows; ~2/9 more backward dots). False: δ_n = g·ẑ from the
    stored ẑ (FlashAttention's way), whose rounding leaves ~1e-7·|g||c| in a on one-hot rows,
    which dominates grad_s and the gradients of confidently assigned rows when s is large."""
    n, d = z.shape
    k = codebook.shape[0]
    dev = z.device
    grad = grad.contiguous()
    grad_z = torch.empty((n, d), dtype=torch.float32, device=dev)
    if n == 0:
        grad_c = torch.zeros((k, d), dtype=torch.float32, device=dev)
        grad_s = torch.zeros_like(s, dtype=torch.float32) if need_grad_s else None
        grad_b = torch.zeros(k, dtype=torch.float32, device=dev) if need_grad_log_prior else None
        return grad_z, grad_c, grad_s, grad_b
    grad_c = torch.empty((k, d), dtype=torch.float32, device=dev)
    grad_b = torch.empty(k, dtype=torch.float32, device=dev) if need_grad_log_prior else None
    if not need_grad_s:
        grad_s = None
    elif s_layout in (PrecisionLayout.SCALAR, PrecisionLayout.PER_ROW):
        grad_s = torch.empty(n, dtype=torch.float32, device=dev)  # per-row sums
    else:
        grad_s = torch.empty(s.shape, dtype=torch.float32, device=dev)

    mu, c_val, c_dist, c_sq = _prepare(z, codebook)
    dist_prec, value_prec = _precisions(z.dtype, accuracy)
    block_d, block_dv, single_d = _d_blocks(z.dtype, d)
    n_dv = triton.cdiv(d, block_dv)
    has_prior = log_prior is not None
    b = log_prior if has_prior else c_sq  # placeholder pointers
    delta = torch.empty(n, dtype=torch.float32, device=dev)
    if delta_pass:
        row_max = torch.empty(n, dtype=torch.float32, device=dev)
        inv_l = torch.empty(n, dtype=torch.float32, device=dev)
    else:
        row_max, inv_l = lse, torch.ones(n, dtype=torch.float32, device=dev)
    common = dict(
        S_LAYOUT=s_layout,
        HAS_PRIOR=has_prior,
        NEED_GRAD_S=need_grad_s,
        SINGLE_D=single_d,
        SAME_C=z.dtype == torch.float32,
        DIST_PRECISION=dist_prec,
        VALUE_PRECISION=value_prec,
        BLOCK_D=block_d,
        BLOCK_DV=block_dv,
    )
    with _device_guard(z):
        if not delta_pass:
            delta_bn = 16 if _INTERPRET else 64
            _soft_quantize_backward_delta_kernel[(triton.cdiv(n, delta_bn),)](
                grad,
                z_hat,
                mu,
                delta,
                n,
                d,
                BLOCK_N=delta_bn,
                BLOCK_D=min(64, max(16, triton.next_power_of_2(d))),
                num_warps=4,
            )

        block_n, block_k, warps, stages = _config("rows", single_d, k)
        _soft_quantize_backward_rows_kernel[(triton.cdiv(n, block_n), n_dv)](
            z,
            grad,
            c_dist,
            c_val,
            c_sq,
            mu,
            s,
            b,
            delta,
            row_max,
            inv_l,
            grad_z,
            grad_s if grad_s is not None else delta,
            n,
            k,
            d,
            DELTA_PASS=delta_pass,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            num_warps=warps,
            num_stages=stages,
            **common,
        )

        block_n, block_k, warps, stages = _config("centroids", single_d, k)
        _soft_quantize_backward_centroids_kernel[(triton.cdiv(k, block_k), n_dv)](
            z,
            grad,
            c_dist,
            c_val,
            c_sq,
            mu,
            s,
            b,
            delta,
            row_max,
            inv_l,
            grad_c,
            grad_s if grad_s is not None else delta,
            grad_b if grad_b is not None else delta,
            n,
            k,
            d,
            NEED_GRAD_B=need_grad_log_prior,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            num_warps=warps,
            num_stages=stages,
            **common,
        )

    if need_grad_s and s_layout == PrecisionLayout.SCALAR:
        grad_s = grad_s.sum(dtype=torch.float64).to(torch.float32).reshape(s.shape)
    return grad_z, grad_c, grad_s, grad_b
