"""A bad checkpoint file is one clear line naming the file, for backbones and SideNets."""
import pytest
import torch

from backbones.checkpoints import CheckpointError, read_checkpoint
from backbones.gmm import GaussianMixture
from solverbench.weights_file import WeightsFileError, read_weights
from solvers.ba.checkpoint import SideNetCheckpointError, load_checkpoint


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)


def bad_files(tmp_path):
    """(path, the message it must give)."""
    folder = tmp_path / "a-folder.pt"
    folder.mkdir()
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    module = tmp_path / "module.pt"
    torch.save(Net(), module)
    other = tmp_path / "object.pt"
    torch.save({"x": Net().lin.weight.data, "when": __import__("datetime").date(2024, 1, 1)}, other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    whole = tmp_path / "whole.pt"
    torch.save(Net().state_dict(), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:300])
    return [
        (folder, "is a folder, not a file"),
        (tmp_path / "nowhere.pt", "does not exist"),
        (empty, r"is empty \(0 bytes\)"),
        (module, r"holds a pickled module \(.*Net\).*save `model\.state_dict\(\)` instead"),
        (other, r"holds a pickled datetime\.date object, which weights_only=True does not load"),
        (garbage, r"is not a file torch\.save wrote \(neither its zip archive nor its older pickle format\)"),
        (cut, r"is not a file torch\.save wrote .*, or one cut short"),
    ]


def test_the_shared_reader(tmp_path):
    for path, message in bad_files(tmp_path):
        with pytest.raises(WeightsFileError, match=message) as err:
            read_weights(path)
        text = str(err.value)
        assert text.startswith(f"checkpoint file {str(path)!r} ") and "\n" not in text, text
        assert "\x1b" not in text and len(text) < 300, text
    good = tmp_path / "good.pt"
    torch.save(Net().state_dict(), good)
    assert set(read_weights(good)) == {"lin.weight", "lin.bias"}


def test_backbone_checkpoints(tmp_path):
    for path, message in bad_files(tmp_path):
        with pytest.raises(CheckpointError, match=message) as err:
            read_checkpoint(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_sidenet_checkpoints(tmp_path):
    backbone = GaussianMixture("gmm2d")
    for path, message in bad_files(tmp_path):
        with pytest.raises(SideNetCheckpointError, match=message) as err:
            load_checkpoint(path, backbone)
        text = str(err.value)
        assert text.startswith(f"SideNet checkpoint {str(path)!r} ") and "\n" not in text, text


def test_a_folder_given_to_a_trained_backbone(tmp_path):
    from backbones.toy2d.backbone import Toy2DFlow

    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        Toy2DFlow(checkpoint=tmp_path)
