"""Compiled loops behind the bootstrap intervals: every draw of a cell at once, from each sample's count.

A bootstrap draw of ``n`` samples is a row of counts, ``counts[r, i]`` the copies of sample ``i`` in
draw ``r``; a metric of the draw is a function of that row alone.  Two metrics need a pass over
every (draw, sample) pair, ``resamples x n`` of them, which numpy would make in several passes over
large temporaries; numba compiles each into one loop (the draws four at a time, so that each
sample's values are read once for four draws).  Compiled once per machine (``cache=True``: the
machine code is kept beside this file, or in numba's user cache where that is read-only).
"""
from __future__ import annotations

from typing import Optional

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


def sorted_rows_with_order(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of the float64 ``(m, n)`` array sorted, and the order that sorts it (int32: ``sorted[r, k] =
    rows[r, order[r, k]]``), by a least-significant-digit radix sort on the values' bits (a byte per pass, a
    pass skipped where every value of the row has the same byte): about twice numpy's argsort with the gather
    that follows it.  Equal values keep their order in the row (numpy's argsort may swap them; the values are
    the same)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    values, order = np.empty_like(rows), np.empty(rows.shape, dtype=np.int32)
    _sort_rows(rows, values, order)
    return values, order


def count_draws(draws: np.ndarray, columns: Optional[np.ndarray], counts: np.ndarray) -> None:
    """Add to ``counts[r]`` (int32, ``(draws, n)``) one for each position drawn in row ``r`` of ``draws``:
    ``counts[r, columns[draws[r, j]]] += 1`` (``columns`` None: the positions are the columns)."""
    if columns is None:
        _count_draws(np.ascontiguousarray(draws, dtype=np.int64), counts)
    else:
        _count_draws_into(np.ascontiguousarray(draws, dtype=np.int64), np.ascontiguousarray(columns, dtype=np.int64),
                          counts)


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


@numba.njit(cache=True, nogil=True)
def _sort_rows(rows, values, order):  # pragma: no cover - compiled
    m, n = rows.shape
    keys, spare_keys = np.empty(n, np.uint64), np.empty(n, np.uint64)
    index, spare_index = np.empty(n, np.int32), np.empty(n, np.int32)
    counts = np.empty((8, 256), np.int64)
    sign, byte = np.uint64(1) << np.uint64(63), np.uint64(255)
    for r in range(m):
        bits = rows[r].view(np.uint64)
        counts[:] = 0
        for i in range(n):  # the bits as an unsigned key in the values' order: negatives flipped, the sign set
            b = bits[i]
            key = ~b if b & sign else b | sign
            keys[i] = key
            index[i] = i
            for p in range(8):
                counts[p, (key >> np.uint64(8 * p)) & byte] += 1
        source_keys, source_index, target_keys, target_index = keys, index, spare_keys, spare_index
        for p in range(8):
            c = counts[p]
            if c.max() == n:  # every key has this byte
                continue
            start = 0
            for v in range(256):
                c[v], start = start, start + c[v]
            shift = np.uint64(8 * p)
            for i in range(n):
                key = source_keys[i]
                d = (key >> shift) & byte
                j = c[d]
                c[d] = j + 1
                target_keys[j], target_index[j] = key, source_index[i]
            source_keys, source_index, target_keys, target_index = target_keys, target_index, source_keys, source_index
        out = values[r].view(np.uint64)
        for i in range(n):
            key = source_keys[i]
            out[i] = key ^ sign if key & sign else ~key
            order[r, i] = source_index[i]


@numba.njit(cache=True, nogil=True)
def _count_draws(draws, counts):  # pragma: no cover - compiled
    for r in range(draws.shape[0]):
        row = counts[r]
        for j in draws[r]:
            row[j] += 1


@numba.njit(cache=True, nogil=True)
def _count_draws_into(draws, columns, counts):  # pragma: no cover - compiled
    for r in range(draws.shape[0]):
        row = counts[r]
        for j in draws[r]:
            row[columns[j]] += 1
