"""The digits backbone and the digits-classifier feature extractor, with the shipped weights."""
import pytest
import torch

import solverbench as sb
from backbones.checkpoints import CheckpointError
from backbones.digits.acceptance import class_accuracy
from backbones.digits.backbone import SHIPPED_FLOW, DigitsFlow, DigitsTrainingConfig
from backbones.digits.data import digits_dataset, from_uint8

# The acceptance check of benchmarks/digits_acceptance.py (1000 samples, euler NFE 200,
# threshold 0.90), made fast: 200 samples at NFE 50.  The shipped model scores about
# 1.00 there; 0.85 leaves room for the coarser solve while still failing a broken model.
FAST_ACCEPTANCE = dict(num_samples=200, nfe=50, cfg_scale=2.0)
FAST_THRESHOLD = 0.85


@pytest.fixture(scope="module")
def digits():
    return DigitsFlow()


@pytest.fixture(scope="module")
def extractor():
    return sb.FEATURE_EXTRACTORS.get("digits-classifier")()


def test_contract(digits):
    assert (digits.sample_shape, digits.num_classes, digits.null_label) == ((1, 8, 8), 10, 10)
    assert digits.default_feature_extractor == "digits-classifier"
    assert len(digits.identity()["checkpoint_sha256"]) == 64
    assert digits.to("cpu").eval() is digits and not digits.training  # as the runner prepares a backbone
    x = torch.randn(4, 1, 8, 8)
    t = torch.full((4,), 0.5)
    assert digits(x, t, torch.tensor([0, 1, 2, 10])).shape == (4, 1, 8, 8)
    torch.testing.assert_close(digits(x, t), digits(x, t, torch.full((4,), 10)))
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        digits(x, t, torch.tensor([0, 1, 2, 11]))


def test_data_sampler_serves_requested_labels_without_repeats(digits):
    labels = torch.arange(50) % 10
    x0, y = digits.sample_data(50, torch.Generator().manual_seed(0), labels=labels)
    assert x0.shape == (50, 1, 8, 8) and torch.equal(y, labels)
    assert x0.min() >= -1 and x0.max() <= 1
    images, all_labels = digits_dataset()
    assert len(images) == 1797 and set(all_labels.tolist()) == set(range(10))
    drawn, y = digits.sample_data(1797, torch.Generator().manual_seed(1))
    assert len(torch.unique(drawn.flatten(1), dim=0)) == 1797  # the whole data set, no image twice
    labels = torch.arange(1000) % 10  # 100 per class: fewer than each class has
    drawn, _ = digits.sample_data(1000, torch.Generator().manual_seed(2), labels=labels)
    assert len(torch.unique(drawn.flatten(1), dim=0)) == 1000


def test_to_images_is_uint8_and_round_trips(digits):
    x0, _ = digits.sample_data(16, torch.Generator().manual_seed(0))
    images = digits.to_images(x0)
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 8, 8)
    assert (from_uint8(images) - x0).abs().max() <= 1 / 127.5


def test_feature_extractor_shapes_and_input_checks(digits, extractor):
    images = digits.to_images(digits.sample_data(8, torch.Generator().manual_seed(0))[0])
    features = extractor(images)
    assert features.shape == (8, 128) and features.dtype == torch.float32
    assert extractor.logits(images).shape == (8, 10)
    with pytest.raises(ValueError, match=r"uint8 images of shape \(N, 1, 8, 8\)"):
        extractor(images.float())
    with pytest.raises(ValueError, match=r"uint8 images of shape \(N, 1, 8, 8\)"):
        extractor(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_classifier_knows_the_digits(digits, extractor):
    images, labels = digits_dataset()
    accuracy = (extractor.logits(digits.to_images(images)).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.98


def test_acceptance_fast(digits, extractor):
    """The shipped model draws the requested digits: see FAST_ACCEPTANCE and FAST_THRESHOLD above."""
    accuracy = class_accuracy(digits, extractor, **FAST_ACCEPTANCE)
    assert accuracy.nfe == FAST_ACCEPTANCE["nfe"]
    assert accuracy.overall >= FAST_THRESHOLD, str(accuracy)


def test_mismatched_checkpoint_names_the_file_and_keys(tmp_path):
    stored = torch.load(SHIPPED_FLOW, weights_only=True)
    stored["state_dict"].pop("mid_attention.attention.in_proj_weight")
    stored["state_dict"]["stem.weight"] = torch.zeros(1, 1, 3, 3)
    path = tmp_path / "broken.pt"
    torch.save(stored, path)
    with pytest.raises(CheckpointError) as err:
        DigitsFlow(checkpoint=path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys: mid_attention.attention.in_proj_weight" in message
    assert "stem.weight (file (1, 1, 3, 3), model (32, 1, 3, 3))" in message


def test_train_writes_a_loadable_checkpoint(tmp_path):
    config = DigitsTrainingConfig(steps=2, batch_size=8, width=8)
    path = DigitsFlow.train_backbone(config, tmp_path / "digits.pt", progress=False)
    b = DigitsFlow(checkpoint=path)
    assert b.config == config
    assert b(torch.zeros(2, 1, 8, 8), torch.rand(2), torch.tensor([3, 10])).shape == (2, 1, 8, 8)
    assert b.identity() != DigitsFlow().identity()  # another model (SideNets, references are keyed by it)
    assert b.data_identity() == DigitsFlow().data_identity()  # of the same data (image reference statistics)
