"""FLOPs per sample of a cell's solve (``solverbench.flops``), split into backbone and solver, and in the rows."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import solverbench as sb
from backbones.digits.backbone import DigitsFlow
from backbones.gmm import GaussianMixture
from solverbench.engine import run_grid
from solverbench.flops import solve_cost
from solverbench.grid import parse_grid
from solverbench.report import write_report

DIGITS_SIDENET = "solvers/ba/checkpoints/digits.pt"


@pytest.fixture(scope="module")
def digits():
    return DigitsFlow()


def one_call(backbone, batch: int) -> int:
    x, t, y = torch.randn(batch, 1, 8, 8), torch.full((batch,), 0.5), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        backbone(x, t, y)
    return counter.get_total_flops()


def test_backbone_flops_are_one_call_per_nfe_and_a_cfg_pair_is_the_doubled_batch(digits):
    noise, labels = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3])
    plain = solve_cost(digits, sb.get_solver("euler"), noise, labels, nfe=6, guidance=sb.Guidance(1.0))
    assert plain.backbone_per_nfe == one_call(digits, 1) and plain.backbone_per_sample == 6 * one_call(digits, 1)
    assert plain.solver_per_sample == 0  # Euler adds no matrix products of its own
    guided = solve_cost(digits, sb.get_solver("euler"), noise, labels, nfe=6, guidance=sb.Guidance(2.0, (0.0, 1.0)))
    assert guided.backbone_per_nfe == one_call(digits, 2)  # Euler never evaluates at t = 0: every NFE is a pair


def test_the_sidenet_is_counted_apart_from_the_backbone(digits):
    noise, labels = torch.randn(2, 1, 8, 8), torch.tensor([4, 5])
    ba = sb.get_solver("ba", checkpoint=DIGITS_SIDENET)
    ba.prepare(digits)
    on = solve_cost(digits, ba, noise, labels, nfe=5, guidance=sb.Guidance(1.0))
    off = solve_cost(digits, sb.get_solver("ba", sidenet="off"), noise, labels, nfe=5, guidance=sb.Guidance(1.0))
    assert on.backbone_per_sample == off.backbone_per_sample == 5 * one_call(digits, 1)
    assert off.solver_per_sample == 0 and on.solver_per_sample > on.backbone_per_sample  # 136k params beside 562k
    fields = on.row_fields()
    assert fields["flops_per_sample"] == fields["backbone_flops_per_sample"] + fields["solver_flops_per_sample"]


def test_a_backbone_without_parameters_reports_no_backbone_flops():
    gmm = GaussianMixture("gmm2d")
    counted = solve_cost(gmm, sb.get_solver("heun"), torch.randn(2, 2), torch.tensor([0, 1]), nfe=4,
                          guidance=sb.Guidance(1.0))
    assert counted.backbone_per_sample is None and counted.backbone_per_nfe is None
    assert counted.row_fields()["flops_per_sample"] is None and counted.solver_per_sample == 0


def two_mode_cost(backbone, solver, noise, labels, **kwargs) -> tuple[int, int, int]:
    """(FLOPs in all, inside the backbone, peak bytes) as torch's own counter and TensorMemory give them: a
    FlopCounterMode over the solve, another around each backbone call, TensorMemory outside both."""
    from solverbench.memory import TensorMemory

    inside = [0]

    def counted(x, t, y=None):
        with FlopCounterMode(display=False) as nested:
            v = backbone(x, t, y)
        inside[0] += nested.get_total_flops()
        return v

    class Counted:
        def __getattr__(self, name):
            return getattr(backbone, name)

        def __call__(self, *args):
            return counted(*args)

    with TensorMemory() as memory, FlopCounterMode(display=False) as counter:
        sb.sample(Counted(), solver, noise, labels, **kwargs)
    return counter.get_total_flops(), inside[0], memory.peak


@pytest.mark.parametrize("backbone_name, solver, nfe, scale", [
    ("digits", ("ba", {"checkpoint": DIGITS_SIDENET}), 5, 2.0), ("digits", ("flow-unipc", {"order": 3}), 7, 1.0),
    ("gmm", ("ba", {"checkpoint": "solvers/ba/checkpoints/gmm64.pt"}), 6, 1.0), ("gmm", ("rk4", {}), 8, 1.5)])
def test_the_one_pass_count_is_torchs_flop_counter_and_tensor_memory(digits, backbone_name, solver, nfe, scale):
    backbone = digits if backbone_name == "digits" else GaussianMixture("gmm64")
    shape = (1, 1, 8, 8) if backbone_name == "digits" else (1, 64)
    name, solver = solver[0], sb.get_solver(solver[0], **solver[1])
    if name == "ba":
        solver.prepare(backbone)
    noise, labels, guidance = torch.randn(shape), torch.tensor([3]), sb.Guidance(scale, (0.0, 1.0))
    cost = solve_cost(backbone, solver, noise, labels, nfe=nfe, guidance=guidance)
    total, inside, peak = two_mode_cost(backbone, solver, noise, labels, nfe=nfe, guidance=guidance)
    assert cost.solver_per_sample == total - inside and cost.peak_memory_per_sample == peak
    assert cost.backbone_per_sample == (inside if backbone_name == "digits" else None)
    assert cost.solver_per_sample > 0 or name != "ba"


def test_sweep_rows_and_table_1_carry_the_costs(tmp_path):
    grid = parse_grid({"name": "costs", "backbones": ["digits"], "solvers": ["euler", "heun"], "nfe": [4],
                       "num_samples": 4, "batch_size": 4, "metrics": ["trajectory_error"],
                       "reference": {"rtol": 1e-4, "atol": 1e-4}})
    rows = run_grid(grid, tmp_path / "results", progress=False).frame
    assert (rows["backbone_flops_per_sample"] == 4 * rows["backbone_flops_per_nfe"]).all()
    assert rows["flops_per_sample"].notna().all() and rows["wall_time_per_sample"].notna().all()
    assert (rows["peak_memory_per_sample"] > 0).all()
    write_report(tmp_path / "results", tmp_path / "report")
    table = (tmp_path / "report" / "costs" / "table1.md").read_text()
    assert ("| wall time per sample (ms) | FLOPs per sample (MFLOPs) | solver FLOPs per sample (MFLOPs) "
            "| peak memory per sample (KB) |") in table
    flops = rows.set_index("solver")["flops_per_sample"]
    assert "| euler | " in table and f"| {flops['euler'] / 1e6:.1f} |" in table  # MFLOPs, one fixed format
