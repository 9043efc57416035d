"""Are the bootstrap intervals honest?  Their standard error beside the spread of the metric over
independent sample sets, for one cell and for the paired difference of two cells.

    python benchmarks/interval_check.py [--sets 16] [--bootstrapped 4]

Each check draws ``--sets`` independent sample sets (the noise of seeds 0, 1, ..., the labels of
seed 0, as a table holds the labels and the compared set fixed) and sets the standard deviation
over them beside the bootstrap standard error of the first ``--bootstrapped`` sets.  An honest
interval has a standard error about the size of that spread.

- One cell: FID on digits (Euler, NFE 10, CFG 2, 500 samples, digits-classifier features against
  all 1797 digits) and the sliced Wasserstein distance on gmm64 (Euler, NFE 10, 1024 samples,
  against one fixed data draw); the standard error is the interval's half width / 1.96, as a
  sweep computes it.
- A paired difference: Euler minus Heun at NFE 4 from the same noise, for the trajectory error
  and the sliced Wasserstein distance on gmm64 (1024 samples) and FID on digits (CFG 2, 500
  samples).  Its standard error is the spread of the difference of the two cells' bootstrap
  replicates (the same draws for both, as the cells of a table share them:
  ``solverbench.paired_arrays``); beside it the unpaired ``sqrt(se_1^2 + se_2^2)``, what the two
  cells' own intervals would say of the difference.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

import solverbench as sb
from solverbench.metrics.distribution import sliced_wasserstein2, sliced_wasserstein_resampled
from solverbench.metrics.image.extractors import build_extractor, extract_features
from solverbench.metrics.image.frechet import frechet_distance, frechet_distance_resampled, frechet_statistics
from solverbench.metrics.image.reference import image_batches
from solverbench.metrics.trajectory import per_sample_rms
from solverbench.noise import data_generator, labels_for, noise_for
from solverbench.uncertainty import Z, bootstrap_count_replicates, bootstrap_interval, bootstrap_replicates

PAIR = ("euler", "heun")  # the paired difference: PAIR[0] minus PAIR[1], both at PAIRED_NFE
PAIRED_NFE = 4
REFERENCE_TOLERANCE = 1e-7  # of the reference solve behind the trajectory error


@dataclass
class Sizes:
    gmm: int = 1024  # samples of a gmm64 set
    digits: int = 500  # samples of a digits set
    digits_reference: int = 1797  # data digits behind FID's reference statistics (all of them)
    resamples: int = 200  # bootstrap draws


def spread(name: str, values: list[float], ses: list[float], log: Callable[[str], None]) -> dict[str, object]:
    log(f"{name}: over {len(values)} independent sample sets mean {statistics.mean(values):.4g}, "
        f"sd {statistics.stdev(values):.3g}; bootstrap se of the first {len(ses)}: "
        + ", ".join(f"{se:.3g}" for se in ses))
    return {"values": values, "sd": statistics.stdev(values), "se": ses}


def samples(backbone, seed: int, n: int, cfg_scale: float, solver: str = "euler", nfe: int = 10
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``solver`` at ``nfe`` from the noise of ``seed``, with the labels of seed 0 (what a table holds fixed)."""
    labels = labels_for(0, range(n), backbone.num_classes)
    noise = noise_for(seed, range(n), backbone.sample_shape)
    return sb.sample(backbone, solver, noise, labels, nfe=nfe, cfg_scale=cfg_scale).samples, labels


class Digits:
    """The digits backbone, its classifier's features, and FID's reference statistics of the data."""

    def __init__(self, sizes: Sizes):
        self.backbone = sb.resolve_backbone("digits")
        self.extractor = build_extractor("digits-classifier", None, "cpu")
        x0, _ = self.backbone.sample_data(sizes.digits_reference, torch.Generator().manual_seed(0))
        self.reference = frechet_statistics(self.features(x0))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return extract_features(self.extractor, image_batches(self.backbone, x, 250), "cpu")["features"]


def fid_on_digits(digits: Digits, sets: int, bootstrapped: int, sizes: Sizes, log: Callable[[str], None]) -> dict:
    values, ses = [], []
    for seed in range(sets):
        x, labels = samples(digits.backbone, seed, sizes.digits, 2.0)
        features = digits.features(x)
        value = frechet_distance(features, digits.reference, "torch-fidelity")
        values.append(value)
        if seed < bootstrapped:
            low, high = bootstrap_interval(frechet_distance_resampled(features, digits.reference), value,
                                           len(features), seed=seed, name="fid", resamples=sizes.resamples,
                                           nonnegative=True, strata=labels)
            ses.append((high - low) / (2 * Z))
    return spread(f"FID, digits, {sizes.digits} samples", values, ses, log)


def sliced_wasserstein_on_gmm64(sets: int, bootstrapped: int, sizes: Sizes, log: Callable[[str], None]) -> dict:
    backbone = sb.resolve_backbone("gmm", preset="gmm64")
    values, ses = [], []
    for seed in range(sets):
        x, labels = samples(backbone, seed, sizes.gmm, 1.0)
        data, _ = backbone.sample_data(sizes.gmm, data_generator(0), labels=labels)  # one data set, as in a table
        value = sliced_wasserstein2(x, data, seed=0)
        values.append(value)
        if seed < bootstrapped:
            replicates = bootstrap_count_replicates(sliced_wasserstein_resampled(x, data, 0), len(x), seed=seed,
                                                    name="sw", resamples=sizes.resamples, strata=labels)
            ses.append(float(np.std(replicates, ddof=1)))
    return spread(f"sliced Wasserstein, gmm64, {sizes.gmm} samples", values, ses, log)


# one cell's metric and, where asked, its bootstrap replicates (drawn with the set's seed as a sweep's cell seed):
# (samples, noise, labels, the set's seed, replicates asked) -> (value, replicates or None)
Measure = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, bool], tuple[float, Optional[np.ndarray]]]


def paired(name: str, backbone, n: int, cfg_scale: float, measure: Measure, sets: int, bootstrapped: int,
           log: Callable[[str], None]) -> dict:
    """The difference PAIR[0] - PAIR[1] of ``measure`` over independent sets, and its bootstrap standard error
    from the difference of the two cells' replicates (same draws), beside the unpaired one."""
    differences, paired_ses, unpaired_ses = [], [], []
    for seed in range(sets):
        labels = labels_for(0, range(n), backbone.num_classes)
        noise = noise_for(seed, range(n), backbone.sample_shape)
        cells = [measure(sb.sample(backbone, solver, noise, labels, nfe=PAIRED_NFE, cfg_scale=cfg_scale).samples,
                         noise, labels, seed, seed < bootstrapped) for solver in PAIR]
        differences.append(cells[0][0] - cells[1][0])
        if seed < bootstrapped:
            (_, first), (_, second) = cells
            paired_ses.append(float(np.std(first - second, ddof=1)))
            unpaired_ses.append(float(np.hypot(np.std(first, ddof=1), np.std(second, ddof=1))))
    sd = statistics.stdev(differences)
    log(f"{name}, {PAIR[0]} - {PAIR[1]} at NFE {PAIRED_NFE} from the same noise: over {sets} independent sample "
        f"sets mean {statistics.mean(differences):.4g}, sd {sd:.3g}; bootstrap se of the paired difference of the "
        f"first {len(paired_ses)}: " + ", ".join(f"{se:.3g}" for se in paired_ses)
        + "; unpaired se: " + ", ".join(f"{se:.3g}" for se in unpaired_ses))
    return {"differences": differences, "sd": sd, "paired_se": paired_ses, "unpaired_se": unpaired_ses}


def paired_on_gmm64(sets: int, bootstrapped: int, sizes: Sizes, log: Callable[[str], None]) -> dict:
    backbone = sb.resolve_backbone("gmm", preset="gmm64")
    reference = sb.get_solver("reference", rtol=REFERENCE_TOLERANCE, atol=REFERENCE_TOLERANCE)
    endpoints: dict[int, torch.Tensor] = {}

    def trajectory_error(x: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor, seed: int, bootstrap: bool
                         ) -> tuple[float, Optional[np.ndarray]]:
        if seed not in endpoints:  # both solvers of a set share its reference solve
            endpoints.clear()
            endpoints[seed] = sb.sample(backbone, reference, noise, labels).samples
        err = per_sample_rms(x, endpoints[seed])
        replicates = bootstrap_replicates(lambda idx: float(err[idx].mean()), len(err), seed=seed,
                                          name="trajectory_error", resamples=sizes.resamples, strata=labels)\
            if bootstrap else None
        return float(err.mean()), replicates

    def sliced_wasserstein(x: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor, seed: int, bootstrap: bool
                           ) -> tuple[float, Optional[np.ndarray]]:
        data, _ = backbone.sample_data(len(x), data_generator(0), labels=labels)  # one data set, as in a table
        replicates = bootstrap_count_replicates(sliced_wasserstein_resampled(x, data, 0), len(x), seed=seed,
                                                name="sliced_wasserstein", resamples=sizes.resamples,
                                                strata=labels) if bootstrap else None
        return sliced_wasserstein2(x, data, seed=0), replicates

    return {name: paired(f"{name}, gmm64, {sizes.gmm} samples", backbone, sizes.gmm, 1.0, measure, sets,
                         bootstrapped, log)
            for name, measure in (("trajectory error", trajectory_error), ("sliced Wasserstein", sliced_wasserstein))}


def paired_fid_on_digits(digits: Digits, sets: int, bootstrapped: int, sizes: Sizes, log: Callable[[str], None]
                         ) -> dict:
    def fid(x: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor, seed: int, bootstrap: bool
            ) -> tuple[float, Optional[np.ndarray]]:
        features = digits.features(x)
        replicates = bootstrap_replicates(frechet_distance_resampled(features, digits.reference), len(features),
                                          seed=seed, name="fid", resamples=sizes.resamples, strata=labels)\
            if bootstrap else None
        return frechet_distance(features, digits.reference, "torch-fidelity"), replicates

    return {"FID": paired(f"FID, digits, {sizes.digits} samples", digits.backbone, sizes.digits, 2.0, fid, sets,
                          bootstrapped, log)}


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, dict]:
    sizes = Sizes(args.gmm_samples, args.digits_samples, args.digits_reference, args.resamples)
    digits = Digits(sizes)
    out: dict[str, dict] = {}
    if "cell" in args.checks:
        out["FID"] = fid_on_digits(digits, args.sets, args.bootstrapped, sizes, log)
        out["sliced Wasserstein"] = sliced_wasserstein_on_gmm64(args.sets, args.bootstrapped, sizes, log)
    if "paired" in args.checks:
        out["paired"] = {**paired_on_gmm64(args.sets, args.bootstrapped, sizes, log),
                         **paired_fid_on_digits(digits, args.sets, args.bootstrapped, sizes, log)}
    return out


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=16, help="independent sample sets (default 16)")
    parser.add_argument("--bootstrapped", type=int, default=4, help="sets whose bootstrap se is shown (default 4)")
    parser.add_argument("--checks", nargs="+", choices=["cell", "paired"], default=["cell", "paired"],
                        help="one cell's intervals, the paired differences, or both (default)")
    defaults = Sizes()
    parser.add_argument("--gmm-samples", type=int, default=defaults.gmm, help="samples of a gmm64 set")
    parser.add_argument("--digits-samples", type=int, default=defaults.digits, help="samples of a digits set")
    parser.add_argument("--digits-reference", type=int, default=defaults.digits_reference,
                        help="data digits behind FID's reference statistics (default all 1797)")
    parser.add_argument("--resamples", type=int, default=defaults.resamples, help="bootstrap draws (default 200)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    run(parse(argv))


if __name__ == "__main__":
    main()
