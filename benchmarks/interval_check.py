"""Are the bootstrap intervals of the distribution metrics honest?  Their standard error beside
the spread of the metric over independent sample sets.

    python benchmarks/interval_check.py [--sets 16] [--bootstrapped 4]

For FID on digits (Euler, NFE 10, CFG 2, 500 samples, digits-classifier features against all
1797 digits) and for the sliced Wasserstein distance on gmm64 (Euler, NFE 10, 1024 samples,
against one fixed data draw): draw ``--sets`` independent sample sets (the noise of seeds 0, 1,
..., the labels of seed 0, as a table holds the labels and the compared set fixed), take
the standard deviation of the metric over them, and the bootstrap standard error (the
interval's half width / 1.96, as a sweep computes it) of the first ``--bootstrapped`` sets.
An honest interval has a standard error about the size of that spread.
"""
from __future__ import annotations

import argparse
import statistics

import torch

import solverbench as sb
from solverbench.metrics.distribution import sliced_wasserstein2, sliced_wasserstein_resampled
from solverbench.metrics.image.extractors import build_extractor, extract_features
from solverbench.metrics.image.frechet import frechet_distance, frechet_distance_resampled, frechet_statistics
from solverbench.metrics.image.reference import image_batches
from solverbench.noise import data_generator, labels_for, noise_for
from solverbench.uncertainty import DEFAULT_RESAMPLES, Z, bootstrap_interval


def spread(name: str, values: list[float], ses: list[float]) -> None:
    print(f"{name}: over {len(values)} independent sample sets mean {statistics.mean(values):.4g}, "
          f"sd {statistics.stdev(values):.3g}; bootstrap se of the first {len(ses)}: "
          + ", ".join(f"{se:.3g}" for se in ses))


def samples(backbone, seed: int, n: int, cfg_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler at NFE 10 from the noise of ``seed``, with the labels of seed 0 (what a table holds fixed)."""
    labels = labels_for(0, range(n), backbone.num_classes)
    noise = noise_for(seed, range(n), backbone.sample_shape)
    return sb.sample(backbone, "euler", noise, labels, nfe=10, cfg_scale=cfg_scale).samples, labels


def fid_on_digits(sets: int, bootstrapped: int) -> None:
    backbone = sb.resolve_backbone("digits")
    extractor = build_extractor("digits-classifier", None, "cpu")
    x0, _ = backbone.sample_data(1797, torch.Generator().manual_seed(0))
    reference = frechet_statistics(extract_features(extractor, image_batches(backbone, x0, 250), "cpu")["features"])
    values, ses = [], []
    for seed in range(sets):
        x, labels = samples(backbone, seed, 500, 2.0)
        features = extract_features(extractor, image_batches(backbone, x, 250), "cpu")["features"]
        value = frechet_distance(features, reference, "torch-fidelity")
        values.append(value)
        if seed < bootstrapped:
            low, high = bootstrap_interval(frechet_distance_resampled(features, reference), value, len(features),
                                           seed=seed, name="fid", resamples=DEFAULT_RESAMPLES, nonnegative=True,
                                           strata=labels)
            ses.append((high - low) / (2 * Z))
    spread("FID, digits, 500 samples", values, ses)


def sliced_wasserstein_on_gmm64(sets: int, bootstrapped: int) -> None:
    backbone = sb.resolve_backbone("gmm", preset="gmm64")
    values, ses = [], []
    for seed in range(sets):
        x, labels = samples(backbone, seed, 1024, 1.0)
        data, _ = backbone.sample_data(1024, data_generator(0), labels=labels)  # one data set for all, as in a table
        value = sliced_wasserstein2(x, data, seed=0)
        values.append(value)
        if seed < bootstrapped:
            ses.append((bootstrap_interval(sliced_wasserstein_resampled(x, data, 0), value, len(x), seed=seed,
                                           name="sw", strata=labels)[1] - value) / Z)
    spread("sliced Wasserstein, gmm64, 1024 samples", values, ses)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=16, help="independent sample sets (default 16)")
    parser.add_argument("--bootstrapped", type=int, default=4, help="sets whose bootstrap se is shown (default 4)")
    args = parser.parse_args(argv)
    fid_on_digits(args.sets, args.bootstrapped)
    sliced_wasserstein_on_gmm64(args.sets, args.bootstrapped)


if __name__ == "__main__":
    main()
