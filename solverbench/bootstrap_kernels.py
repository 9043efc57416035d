"""Compiled loops behind the bootstrap intervals: every draw of a cell at once, from each sample's count.

A bootstrap draw of ``n`` samples is a row of counts, ``counts[r, i]`` the copies of sample ``i`` in
draw ``r``; a metric of the draw is a function of that row alone.  Two metrics need a pass over
every (draw, sample) pair, ``resamples x n`` of them, which numpy would make in several passes over
large temporaries; numba compiles each into one loop (the draws four at a time, so that each
sample's values are read once for four draws).  Compiled once per machine (``cache=True``: the
machine code is kept beside this file, or in numba's user cache where that is read-only).
"""
from __future__ import annotations

import numba
import numpy as np


def weighted_sums(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``counts @ values`` for ``(draws, n)`` integer counts and ``n`` float64 values: each draw's sum of its
    samples' values (a draw's mean is this over ``n``), without a float copy of the counts."""
    out = np.zeros(len(counts), dtype=np.float64)
    _weighted_sums(np.ascontiguousarray(counts), np.ascontiguousarray(values, dtype=np.float64), out)
    return out


def sorted_cross_terms(counts: np.ndarray, order: np.ndarray, steps: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    """``sum_d sum_p a^r_{d,p} b_{d,p}`` for each draw ``r``: in every direction ``d``, the inner product of the
    draw's sorted values with fixed sorted values ``b_d``, from the draw's counts alone.

    The draw's sorted values are value ``k`` of ``a_d`` (sorted) repeated ``m_k = counts[r, order[d, k]]``
    times, at positions ``[e_{k-1}, e_k)`` with ``e = cumsum(m)``, so with ``B_d[j] = b_{d,0} + ... + b_{d,j-1}``
    (``prefix``, ``(directions, n + 1)``) the product is ``sum_k a_{d,k} (B_d[e_k] - B_d[e_{k-1}])``, which
    summation by parts makes ``sum_k (a_{d,k} - a_{d,k+1}) B_d[e_k]`` (``steps``, ``a_{d,n} = 0``): one pass
    per (direction, draw), no sort and no draw held in memory."""
    out = np.zeros(len(counts), dtype=np.float64)
    _sorted_cross_terms(np.ascontiguousarray(counts), np.ascontiguousarray(order, dtype=np.int32),
                        np.ascontiguousarray(steps, dtype=np.float64), np.ascontiguousarray(prefix, dtype=np.float64),
                        out)
    return out


@numba.njit(cache=True, nogil=True)
def _weighted_sums(counts, values, out):  # pragma: no cover - compiled
    draws, n = counts.shape
    r = 0
    while r + 4 <= draws:
        c0, c1, c2, c3 = counts[r], counts[r + 1], counts[r + 2], counts[r + 3]
        s0 = s1 = s2 = s3 = 0.0
        for i in range(n):
            v = values[i]
            s0 += c0[i] * v
            s1 += c1[i] * v
            s2 += c2[i] * v
            s3 += c3[i] * v
        out[r], out[r + 1], out[r + 2], out[r + 3] = s0, s1, s2, s3
        r += 4
    while r < draws:
        c, s = counts[r], 0.0
        for i in range(n):
            s += c[i] * values[i]
        out[r] = s
        r += 1


@numba.njit(cache=True, nogil=True)
def _sorted_cross_terms(counts, order, steps, prefix, out):  # pragma: no cover - compiled
    draws, n = counts.shape
    for d in range(order.shape[0]):
        o, w, b = order[d], steps[d], prefix[d]
        r = 0
        while r + 4 <= draws:
            c0, c1, c2, c3 = counts[r], counts[r + 1], counts[r + 2], counts[r + 3]
            e0 = e1 = e2 = e3 = 0
            a0 = a1 = a2 = a3 = 0.0
            for k in range(n):
                j, wk = o[k], w[k]
                e0 += c0[j]
                e1 += c1[j]
                e2 += c2[j]
                e3 += c3[j]
                a0 += wk * b[e0]
                a1 += wk * b[e1]
                a2 += wk * b[e2]
                a3 += wk * b[e3]
            out[r] += a0
            out[r + 1] += a1
            out[r + 2] += a2
            out[r + 3] += a3
            r += 4
        while r < draws:
            c, e, a = counts[r], 0, 0.0
            for k in range(n):
                e += c[o[k]]
                a += w[k] * b[e]
            out[r] += a
            r += 1
