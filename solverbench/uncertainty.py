"""95% confidence intervals of metrics, and their combination across seeds.

Every metric value ``m`` of a result row comes with ``m_ci_low`` and ``m_ci_high``:

- per-sample metrics (trajectory error, log-likelihood): the mean over samples, with the
  percentile bootstrap interval of the mean (2000 draws; it follows the skew of errors that
  are small for most samples and large for a few, and stays positive where they are);
- precision and recall (fractions of yes/no outcomes): ``p +- 1.96 sqrt(p (1 - p) / n)``;
- distribution metrics (sliced Wasserstein, energy distance, FID, sFID, KID, IS):
  ``m +- 1.96 se``, ``se`` the standard deviation of the metric over ``resamples`` bootstrap
  draws of the cell's samples (drawn with replacement), the set they are compared with held
  fixed: it is the same for every solver of a table, so it cancels from a comparison; how
  much it moves on its own is the metric's data-versus-data noise floor, stored as
  ``m_floor``.  A distance's interval is cut at 0 from below.  (A percentile interval would
  be wrong here: repeated points in a bootstrap draw inflate a distance, so the draws sit
  above the estimate; their spread is what they measure well.)

Where the cell has class labels the draws are stratified by label (each class resampled
from its own samples): the labels are part of the design, the same for every solver of a
table, and resampling them too would add their variability to every interval (on digits it
made FID's interval 2.5 times too wide; ``python benchmarks/interval_check.py`` compares the
standard errors with the spread over independent sample sets).  The draws are seeded by the
cell's seed and the metric's name, so a rerun gives the same interval; the cells of a run that share
them (the solvers of a table) draw them once (``memo``: the run's memo, where they are small enough
to keep).  Across seeds (``combine_seeds``) the interval of the mean is ``mean +- 1.96 se``
with ``se^2 = max(sum_i se_i^2 / k^2, s^2 / k)``: the seeds' own standard errors pooled, or
the spread between the k seed values where that is larger.
"""
from __future__ import annotations

import hashlib
import zlib
from typing import Any, Callable, Iterable, Iterator, MutableMapping, Optional, Sequence

import numpy as np
import torch

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5% quantile
DEFAULT_RESAMPLES = 200
MEAN_RESAMPLES = 2000  # bootstrap means are cheap, and percentiles want many
CHUNK_ELEMENTS = 1 << 22  # indices drawn at once (a few tens of MB)
MEMO_BYTES = 1 << 28  # a metric's draws are kept for the run's next cells up to this size (256 MB)
OPTIONS = {"bootstrap_resamples": f"bootstrap draws behind the 95% interval of each distribution metric "
                                  f"(default {DEFAULT_RESAMPLES})"}


def ci_columns(name: str) -> tuple[str, str]:
    """The result columns holding the interval of metric column ``name``."""
    return f"{name}_ci_low", f"{name}_ci_high"


def with_interval(name: str, value: float, interval: tuple[float, float]) -> dict[str, float]:
    """``{name: value, name_ci_low: low, name_ci_high: high}``."""
    low, high = ci_columns(name)
    return {name: float(value), low: float(interval[0]), high: float(interval[1])}


def check_resamples(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 20:
        raise ValueError(f"metric option bootstrap_resamples: bad value {value!r}; allowed: an integer >= 20 "
                         "(the spread of fewer draws is too rough a standard error)")
    return value


def bootstrap_generator(seed: int, name: str) -> torch.Generator:
    """The generator of one metric's bootstrap draws in one cell: from the cell's seed and the name."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def resample_indices(n: int, resamples: int, generator: torch.Generator,
                     strata: Optional[torch.Tensor] = None) -> Iterator[torch.Tensor]:
    """``resamples`` rows of ``n`` indices drawn with replacement, in chunks ``(r, n)``.

    With ``strata`` (one class label per sample) each class is drawn from its own samples, as
    many as it has: the draws keep the cell's labels, which a table holds fixed across solvers.
    """
    for drawn in group_draws(n, resamples, generator, strata):
        yield torch.cat([draws if group is None else group[draws] for group, draws in drawn], dim=1)


def group_draws(n: int, resamples: int, generator: torch.Generator, strata: Optional[torch.Tensor] = None
                ) -> Iterator[list[tuple[Optional[torch.Tensor], torch.Tensor]]]:
    """``resample_indices`` before its chunks are put together: per chunk, each class's samples (``None``: all
    ``n``, no strata) and ``(r, class size)`` positions drawn among them."""
    groups = [None] if strata is None else [
        torch.nonzero(strata.cpu() == c).flatten() for c in torch.unique(strata.cpu())]
    per_chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, resamples, per_chunk):
        r = min(per_chunk, resamples - start)
        yield [(g, torch.randint(n if g is None else len(g), (r, n if g is None else len(g)), generator=generator))
               for g in groups]


def strata_digest(strata: Optional[torch.Tensor]) -> Optional[str]:
    """The labels a draw is stratified by, as a short key (SHA-256 of their values)."""
    return None if strata is None else hashlib.sha256(strata.cpu().to(torch.int64).numpy().tobytes()).hexdigest()


def draws_key(kind: str, n: int, seed: int, name: str, resamples: int, strata: Optional[torch.Tensor]) -> tuple:
    """What a metric's bootstrap draws depend on, as a key of the run's memo."""
    return ("bootstrap draws", kind, int(n), int(seed), name, int(resamples), strata_digest(strata))


def kept(memo: Optional[MutableMapping[Any, Any]], key: tuple, nbytes: int, draw: Callable[[], Any],
         whole: Callable[[Any], Any] = lambda drawn: drawn) -> Any:
    """``draw()``, kept in ``memo`` (made ``whole`` first) for the next call with ``key`` where it is at most
    ``MEMO_BYTES``."""
    if memo is None or nbytes > MEMO_BYTES:
        return draw()
    if key not in memo:
        memo[key] = whole(draw())
    return memo[key]


def bootstrap_indices(n: int, *, seed: int, name: str, resamples: int, strata: Optional[torch.Tensor] = None,
                      memo: Optional[MutableMapping[Any, Any]] = None) -> Iterable[torch.Tensor]:
    """The chunks of ``resample_indices`` for the generator of ``seed`` and ``name``: drawn once per run
    (``memo``) where they fit ``MEMO_BYTES``, else drawn as they are read."""
    def draw() -> Iterator[torch.Tensor]:
        return resample_indices(n, resamples, bootstrap_generator(seed, name), strata)

    return kept(memo, draws_key("indices", n, seed, name, resamples, strata), 8 * n * resamples, draw, list)


def bootstrap_counts(n: int, *, seed: int, name: str, resamples: int = DEFAULT_RESAMPLES,
                     strata: Optional[torch.Tensor] = None, memo: Optional[MutableMapping[Any, Any]] = None
                     ) -> np.ndarray:
    """``(resamples, n)``: how many times each sample is in each draw of ``bootstrap_replicates`` (the same
    draws, in the same order), drawn once per run (``memo``) where they fit ``MEMO_BYTES``."""
    from solverbench.bootstrap_kernels import count_draws

    def count() -> np.ndarray:
        rows = []
        for drawn in group_draws(n, resamples, bootstrap_generator(seed, name), strata):
            counts = np.zeros((len(drawn[0][1]), n), dtype=np.int32)
            for group, draws in drawn:  # each class's draws counted into its samples' columns
                count_draws(draws.numpy(), None if group is None else group.numpy(), counts)
            rows.append(counts.astype(np.uint8) if counts.max(initial=0) < 256 else counts)
        return np.concatenate(rows) if rows else np.zeros((0, n), dtype=np.uint8)

    return kept(memo, draws_key("counts", n, seed, name, resamples, strata), n * resamples, count)


def normal_interval(value: float, se: float) -> tuple[float, float]:
    return float(value - Z * se), float(value + Z * se)


def mean_interval(values: torch.Tensor, *, seed: int = 0, name: str = "mean", resamples: int = MEAN_RESAMPLES,
                  strata: Optional[torch.Tensor] = None, memo: Optional[MutableMapping[Any, Any]] = None
                  ) -> tuple[float, tuple[float, float]]:
    """The mean of per-sample ``values`` and the percentile bootstrap interval of the mean: each draw's mean
    from the counts of its samples (``bootstrap_counts``, kept in ``memo`` for the run's next cells)."""
    from solverbench.bootstrap_kernels import weighted_sums

    values = values.detach().double().flatten().cpu()
    counts = bootstrap_counts(len(values), seed=seed, name=name, resamples=resamples, strata=strata, memo=memo)
    means = torch.from_numpy(weighted_sums(counts, values.numpy()) / len(values))
    if not torch.isfinite(means).all():
        return float(values.mean()), (float("nan"), float("nan"))
    low, high = torch.quantile(means, torch.tensor([(1 - LEVEL) / 2, (1 + LEVEL) / 2], dtype=torch.float64))
    return float(values.mean()), (float(low), float(high))


def bootstrap_replicates(statistic: Callable[[torch.Tensor], float], n: int, *, seed: int, name: str,
                         resamples: int = DEFAULT_RESAMPLES, strata: Optional[torch.Tensor] = None,
                         memo: Optional[MutableMapping[Any, Any]] = None) -> np.ndarray:
    """``statistic(indices)`` for each of ``resamples`` bootstrap draws of the ``n`` samples, in draw order.

    The draws depend on ``seed``, ``name``, ``n`` and ``strata`` alone: every cell that shares them (the
    solvers of one table) resamples the same indices, so the difference of two cells' replicates is the
    bootstrap of their paired difference (with ``memo``, the run's memo, they are drawn once where small)."""
    chunks = bootstrap_indices(n, seed=seed, name=name, resamples=resamples, strata=strata, memo=memo)
    return np.array([statistic(idx) for chunk in chunks for idx in chunk], dtype=np.float64)


def bootstrap_count_replicates(statistic: Callable[[np.ndarray], float], n: int, *, seed: int, name: str,
                               resamples: int = DEFAULT_RESAMPLES, strata: Optional[torch.Tensor] = None,
                               memo: Optional[MutableMapping[Any, Any]] = None) -> np.ndarray:
    """``bootstrap_replicates`` of a statistic of the draw's multiset alone, every draw in one call:
    ``statistic(counts)`` with ``counts[r, i]`` the copies of sample ``i`` in draw ``r`` (``bootstrap_counts``:
    the same draws, drawn once per run where ``memo`` is given) returns the ``resamples`` replicates."""
    counts = bootstrap_counts(n, seed=seed, name=name, resamples=resamples, strata=strata, memo=memo)
    return np.asarray(statistic(counts), dtype=np.float64).reshape(resamples)


def interval_from_replicates(value: float, replicates: np.ndarray, nonnegative: bool = False) -> tuple[float, float]:
    """``value +- 1.96 se``, ``se`` the spread of the bootstrap ``replicates``; cut at 0 from below for a metric
    that cannot be negative (a distance); NaN where a replicate is not finite."""
    if not np.isfinite(replicates).all():
        return float("nan"), float("nan")
    low, high = normal_interval(value, float(torch.from_numpy(replicates).std(correction=1)))  # as torch sums
    return (max(low, 0.0) if nonnegative else low), high


def bootstrap_interval(statistic: Callable[[torch.Tensor], float], value: float, n: int, *, seed: int, name: str,
                       resamples: int = DEFAULT_RESAMPLES, nonnegative: bool = False,
                       strata: Optional[torch.Tensor] = None) -> tuple[float, float]:
    """``value +- 1.96 se``, ``se`` the spread of ``statistic(indices)`` over bootstrap draws of the
    ``n`` samples (``statistic`` computes the metric of the samples at ``indices``); cut at 0 from
    below for a metric that cannot be negative (a distance)."""
    replicates = bootstrap_replicates(statistic, n, seed=seed, name=name, resamples=resamples, strata=strata)
    return interval_from_replicates(value, replicates, nonnegative)


def combine_seeds(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]
                  ) -> tuple[float, float, float]:
    """(mean, low, high) over seeds; one seed keeps its own interval; NaN where any interval is missing."""
    values, lows, highs = (np.asarray(a, dtype=float) for a in (values, lows, highs))
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) == 1:
        return mean, float(lows[0]), float(highs[0])
    if np.isnan(lows).any() or np.isnan(highs).any():
        return mean, float("nan"), float("nan")
    k = len(values)
    pooled = float(np.sum(((highs - lows) / (2 * Z)) ** 2)) / k ** 2
    between = float(values.var(ddof=1)) / k
    half = Z * np.sqrt(max(pooled, between))
    return mean, mean - half, mean + half


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
