"""benchmarks/backbone_nfe_cost.py builds each model through its backbone, as a grid would, and times a call."""
import runpy
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "backbone_nfe_cost.py"


def test_a_model_of_each_backbone_gets_a_row_with_its_shape_and_a_time(capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    main(["--models", "sd3-tiny", "ddpm-tiny", "--repeats", "1", "--batch-sizes", "1", "2"])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert sorted(rows) == ["ddpm-tiny", "sd3-tiny"]
    assert rows["sd3-tiny"][2] == "4x8x8" and rows["ddpm-tiny"][2] == "3x8x8"
    assert all(float(ms) > 0 for row in rows.values() for ms in row[3:5])


def test_the_published_configs_are_the_published_models():
    """Built on the meta device (no memory): the parameter counts of SD3-medium, FLUX.1-dev and Sana-1600M."""
    import diffusers
    import torch

    script = runpy.run_path(str(SCRIPT))
    counts = {}
    for name, kind, config in (("sd3-medium", "SD3Transformer2DModel", script["SD3_MEDIUM"]),
                               ("flux-dev", "FluxTransformer2DModel", script["FLUX_DEV"]),
                               ("sana-1600m", "SanaTransformer2DModel", script["SANA_1600M"])):
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in getattr(diffusers, kind).from_config(config).parameters())
    assert counts == {"sd3-medium": 2_028_328_000, "flux-dev": 11_901_408_320, "sana-1600m": 1_604_462_752}
