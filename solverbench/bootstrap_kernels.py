"""Compiled loops behind the bootstrap intervals: every draw of a cell at once, from each sample's count
(and the transposed copies the sliced Wasserstein's projections need).

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


def sorted_cross_terms(counts: np.ndarray, order: np.ndarray, values: np.ndarray, centre: np.ndarray,
                       prefix: np.ndarray) -> np.ndarray:
    """``sum_d sum_p a^r_{d,p} b_{d,p}`` for each draw ``r``: in every direction ``d``, the inner product of the
    draw's sorted values with fixed sorted values ``b_d``, from the draw's counts alone; ``a_d = values[d] -
    centre[d]`` (``values`` sorted, ``(directions, n)``).

    The draw's sorted values are value ``k`` of ``a_d`` repeated ``m_k = counts[r, order[d, k]]`` times, at
    positions ``[e_{k-1}, e_k)`` with ``e = cumsum(m)``, so with ``B_d[j] = b_{d,0} + ... + b_{d,j-1}``
    (``prefix``, ``(directions, n + 1)``) the product is ``sum_k a_{d,k} (B_d[e_k] - B_d[e_{k-1}])``, which
    summation by parts makes ``sum_k (a_{d,k} - a_{d,k+1}) B_d[e_k]`` (``a_{d,n} = 0``): one pass per
    (direction, draw), no sort and no draw held in memory.

    Counts below 256 (every draw of more than a handful of samples) are packed four draws to a 32-bit word,
    ``packed[g, i]`` the counts of sample ``i`` in draws ``4g .. 4g + 3``: one load gives a sample's four
    counts, and where a group's words outgrow the first-level cache (more than ``STAGED_ABOVE`` samples)
    each direction first gathers them into sorted order, so that the pass reads memory in order."""
    counts = np.ascontiguousarray(counts)
    order = np.ascontiguousarray(order, dtype=np.int32)
    values = np.ascontiguousarray(values, dtype=np.float64)
    centre = np.ascontiguousarray(centre, dtype=np.float64).reshape(-1)
    prefix = np.ascontiguousarray(prefix, dtype=np.float64)
    draws, n = counts.shape
    shapes = (values.shape, order.shape, prefix.shape)
    if n == 0 or shapes != ((len(order), n), (len(order), n), (len(order), n + 1)) or centre.shape != (len(order),):
        raise ValueError(f"sorted cross terms of {n} samples need (directions, {n}) values and order, (directions, "
                         f"{n + 1}) prefix sums and a centre per direction, got {shapes} and {centre.shape}")
    if counts.dtype != np.uint8:
        out = np.zeros(draws, dtype=np.float64)
        _sorted_cross_terms(counts, order, values, centre, prefix, out)
        return out
    packed = pack_draws(counts)
    out = np.zeros(4 * len(packed), dtype=np.float64)
    _packed_cross_terms(packed, order.view(np.uint32), values, centre, prefix, out, n > STAGED_ABOVE)
    return out[:draws]


STAGED_ABOVE = 8192  # samples: a group's packed counts (4 bytes a sample) outgrow a 32 KiB first-level cache


def pack_draws(counts: np.ndarray) -> np.ndarray:
    """``(draws, n)`` uint8 counts as ``(ceil(draws / 4), n)`` uint32 words, draw ``4g + q`` in byte ``q`` of
    word ``[g, i]`` (little-endian; missing draws of the last group count nothing)."""
    draws, n = counts.shape
    grouped = np.zeros((-(-draws // 4) * 4, n), dtype=np.uint8)
    grouped[:draws] = counts
    words = np.ascontiguousarray(grouped.reshape(-1, 4, n).transpose(0, 2, 1))
    return words.view("<u4")[..., 0].astype(np.uint32, copy=False)


def sorted_columns_with_order(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column of the float64 ``(n, m)`` array sorted, as the rows of an ``(m, n)`` array, and the order
    that sorts it (int32: ``sorted[c, k] = columns[order[c, k], c]``), by a least-significant-digit radix sort on
    the values' bits (a byte per pass, a pass skipped where every value of the column has the same byte):
    about twice numpy's argsort with the gather that follows it, with no transposed copy of the input.  Equal
    values keep their order in the column (numpy's argsort may swap them; the values are the same)."""
    columns = np.ascontiguousarray(columns, dtype=np.float64)
    n, m = columns.shape
    values, order = np.empty((m, n), dtype=np.float64), np.empty((m, n), dtype=np.int32)
    _sort_columns(columns.view(np.uint64), values.view(np.uint64), order)
    return values, order


def squared_norms(values: np.ndarray, centre: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``sum_d (values[d, k] - centre[d])^2`` for each sample, in sample order: ``values`` sorted by ``order``
    (``sorted_columns_with_order``), summed over the directions in direction order."""
    out = np.zeros(values.shape[1], dtype=np.float64)
    _squared_norms(np.ascontiguousarray(values, dtype=np.float64),
                   np.ascontiguousarray(centre, dtype=np.float64).reshape(len(values)),
                   np.ascontiguousarray(order, dtype=np.int32), out)
    return out


def squared_differences_transposed(x: np.ndarray, y: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``((x - y) ** 2).T`` for two float64 ``(m, n)`` arrays, as a contiguous ``(n, m)`` array, written in
    32 x 32 tiles (the same values as numpy's subtraction, square and strided copy, without the temporaries);
    into ``out`` where given (a spent contiguous float64 array of that shape: no fresh memory to fault in)."""
    x, y = np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"squared differences of equal shapes, got {x.shape} and {y.shape}")
    if out is None:
        out = np.empty(x.shape[::-1], dtype=np.float64)
    elif out.shape != x.shape[::-1] or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"squared differences into a contiguous float64 {x.shape[::-1]} array, got {out.dtype} "
                         f"{out.shape}")
    _transpose(x, y, out)
    return out


def transposed(a: np.ndarray) -> np.ndarray:
    """A contiguous copy of the float64 matrix ``a.T``, copied in 32 x 32 tiles: several times numpy's strided
    copy on matrices larger than the caches (the same values)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.empty(a.shape[::-1], dtype=np.float64)
    _transpose(a, None, out)
    return out


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
def _sorted_cross_terms(counts, order, values, centre, prefix, out):  # pragma: no cover - compiled
    draws, n = counts.shape
    for d in range(order.shape[0]):
        o, a, b = order[d], values[d], prefix[d]
        for r in range(draws):
            c, e, total = counts[r], 0, 0.0
            for k in range(n - 1):
                e += c[o[k]]
                total += (a[k] - a[k + 1]) * b[e]
            e += c[o[n - 1]]
            out[r] += total + (a[n - 1] - centre[d]) * b[e]


@numba.njit(cache=True, nogil=True)
def _packed_cross_terms(packed, order, values, centre, prefix, out, staged):  # pragma: no cover - compiled
    groups, n = packed.shape
    in_order, steps = np.empty(n, np.uint32), np.empty(n, np.float64)
    for d in range(order.shape[0]):
        o, a, b = order[d], values[d], prefix[d]
        for k in range(n - 1):
            steps[k] = a[k] - a[k + 1]
        steps[n - 1] = a[n - 1] - centre[d]
        for g in range(groups):
            words = packed[g]
            if staged:
                for k in range(n):
                    in_order[k] = words[o[k]]
                sums = _four_cross_terms(in_order, None, steps, b)
            else:
                sums = _four_cross_terms(words, o, steps, b)
            for q in range(4):
                out[4 * g + q] += sums[q]


@numba.njit(cache=True, nogil=True, inline="always")
def _four_cross_terms(words, order, steps, b):  # pragma: no cover - compiled
    """The four draws' ``sum_k steps[k] b[e_k]`` from their packed counts, read ``words[order[k]]`` (or
    ``words[k]`` where ``order`` is None: already in sorted order)."""
    byte = np.uint32(255)
    e0 = e1 = e2 = e3 = np.uint64(0)  # unsigned: no negative-index wrap-around in the loop
    s0 = s1 = s2 = s3 = 0.0
    for k in range(len(steps)):
        v = words[k] if order is None else words[order[k]]
        w = steps[k]
        e0 += np.uint64(v & byte)
        e1 += np.uint64((v >> np.uint32(8)) & byte)
        e2 += np.uint64((v >> np.uint32(16)) & byte)
        e3 += np.uint64(v >> np.uint32(24))
        s0 += w * b[e0]
        s1 += w * b[e1]
        s2 += w * b[e2]
        s3 += w * b[e3]
    return s0, s1, s2, s3


@numba.njit(cache=True, nogil=True)
def _sort_columns(columns, values, order):  # pragma: no cover - compiled
    """Radix sort of each column of ``columns`` (the float64 values' bits, ``(n, m)``) into the rows of
    ``values`` (bits too) and ``order``: eight columns at a time copied into rows (whole cache lines read)."""
    n, m = columns.shape
    block = np.empty((8, n), np.uint64)
    keys, spare_keys = np.empty(n, np.uint64), np.empty(n, np.uint64)
    index, spare_index = np.empty(n, np.int32), np.empty(n, np.int32)
    counts = np.empty((8, 256), np.int64)
    sign, byte = np.uint64(1) << np.uint64(63), np.uint64(255)
    for c0 in range(0, m, 8):
        width = min(8, m - c0)
        for i in range(n):
            for q in range(width):
                block[q, i] = columns[i, c0 + q]
        for q in range(width):
            bits = block[q]
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
                source_keys, source_index, target_keys, target_index = (target_keys, target_index, source_keys,
                                                                        source_index)
            row, row_order = values[c0 + q], order[c0 + q]
            for i in range(n):
                key = source_keys[i]
                row[i] = key ^ sign if key & sign else ~key
                row_order[i] = source_index[i]


@numba.njit(cache=True, nogil=True)
def _squared_norms(values, centre, order, out):  # pragma: no cover - compiled
    for d in range(values.shape[0]):
        c = centre[d]
        for k in range(values.shape[1]):
            out[order[d, k]] += (values[d, k] - c) ** 2


@numba.njit(cache=True, nogil=True)
def _count_draws(draws, counts):  # pragma: no cover - compiled
    for r in range(draws.shape[0]):
        row = counts[r]
        for j in draws[r]:
            row[np.uint64(j)] += 1  # unsigned: no negative-index wrap-around


@numba.njit(cache=True, nogil=True)
def _count_draws_into(draws, columns, counts):  # pragma: no cover - compiled
    """Each row's draws counted by position in the group first (a small array, in the first-level cache for a
    class of a few thousand samples), then the counts written to the group's columns."""
    local = np.empty(len(columns), np.int32)
    for r in range(draws.shape[0]):
        local[:] = 0
        for j in draws[r]:
            local[np.uint64(j)] += 1
        row = counts[r]
        for i in range(len(columns)):
            row[columns[i]] += local[i]


@numba.njit(cache=True, nogil=True)
def _transpose(x, y, out):  # pragma: no cover - compiled
    """``out = x.T`` (``y`` None) or ``((x - y) ** 2).T``, in 32 x 32 tiles."""
    m, n = x.shape
    tile = 32
    for i0 in range(0, m, tile):
        i1 = min(m, i0 + tile)
        for j0 in range(0, n, tile):
            for j in range(j0, min(n, j0 + tile)):
                for i in range(i0, i1):
                    out[j, i] = x[i, j] if y is None else (x[i, j] - y[i, j]) ** 2
