"""Peak tensor memory (``solverbench.memory.TensorMemory``) and the cells' ``peak_memory_per_sample``."""
import pytest
import torch

import solverbench as sb
from backbones.digits.backbone import DigitsFlow
from solverbench.flops import solve_cost
from solverbench.memory import TensorMemory, available_bytes



def test_new_storages_count_while_alive_and_views_or_in_place_results_do_not():
    before = torch.ones(500)  # made outside: never counted
    with TensorMemory() as memory:
        a = torch.ones(1000)  # 4000 bytes
        a.add_(1)  # in place: no new memory
        view = a.view(10, 100)  # a view: no new memory
        b = view * 2  # 4000 more
        before.mul_(3)
        assert memory.live == memory.peak == 8000
        del b
        assert memory.live == 4000
        c = torch.zeros(250, dtype=torch.float64)  # 2000: below the peak
    assert memory.peak == 8000 and memory.live == 6000
    del a, view, c
    assert memory.live == 0


def test_a_solve_peak_grows_with_the_batch_and_the_sidenet_holds_more_than_the_scheme_alone():
    digits = DigitsFlow()
    noise, labels = torch.randn(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    guidance = sb.Guidance(2.0)
    ba = sb.get_solver("ba", checkpoint="solvers/ba/checkpoints/digits.pt")
    ba.prepare(digits)
    peaks = {}
    for name, solver in {"euler": sb.get_solver("euler"), "ba": ba, "off": sb.get_solver("ba", sidenet="off")}.items():
        for batch in (1, 4):
            with TensorMemory() as memory:
                sb.sample(digits, solver, noise[:batch], labels[:batch], nfe=6, guidance=guidance)
            peaks[name, batch] = memory.peak
    for name in ("euler", "ba", "off"):
        assert peaks[name, 4] == pytest.approx(4 * peaks[name, 1], rel=0.01)
    assert peaks["ba", 1] > 3 * peaks["off", 1]  # the SideNet's batched offsets
    assert peaks["off", 1] == pytest.approx(peaks["euler", 1], rel=0.05)  # the backbone's activations dominate
    counted = solve_cost(digits, ba, noise, labels, nfe=6, guidance=guidance)
    assert counted.peak_memory_per_sample == peaks["ba", 1]
    assert counted.row_fields()["peak_memory_per_sample"] == peaks["ba", 1]


def test_available_bytes_reads_the_host_memory():
    free = available_bytes("cpu")
    assert isinstance(free, int) and 2**20 < free < 2**50
