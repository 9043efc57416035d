"""benchmarks/sidenet_profile.py times a SideNet call for image and vector samples, and refuses other shapes."""
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "sidenet_profile.py"


@pytest.mark.parametrize("shape, kind", [(["64"], "(64,)"), (["1", "8", "8"], "(1, 8, 8)")])
def test_a_call_is_timed_for_vector_and_image_samples(capsys, shape, kind):
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--shape", *shape, "--classes", "3", "--width", "16", "--batch-size", "4", "--repeats", "1",
                 "--rows", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"4 samples of {kind} x 2 offsets" in out and "ms per call" in out


def test_a_shape_of_two_numbers_is_refused(capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    with pytest.raises(SystemExit):
        main(["--shape", "8", "8", "--device", "cpu"])
    assert "--shape takes C H W (images) or D (vectors), not 2 numbers" in capsys.readouterr().err
