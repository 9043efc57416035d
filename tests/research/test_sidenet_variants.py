"""research/sidenet/sidenet_variants.py's cost counting: torch's FLOP counter with the CPU attention kernel added, a
backbone NFE and a SideNet's work in one bi-anchor interval, with and without CFG."""
import pytest
import torch

from research.sidenet import sidenet_variants

pytestmark = pytest.mark.research


def test_flop_helper_counts_a_tiny_sit_and_the_interval_work():
    flops = sidenet_variants.flops
    linear = torch.nn.Linear(8, 4)
    assert flops(lambda: linear(torch.randn(5, 8))) == 2 * 5 * 8 * 4
    q = torch.randn(1, 2, 16, 8)  # attention on a CPU: QK^T and AV, 2 x 2 heads x 16 x 16 x 8 x 2 FLOPs
    assert flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 4 * 2 * 16 * 16 * 8
    from backbones.sit.backbone import SiTBackbone
    tiny = SiTBackbone(size="tiny", resolution=64, random_weights=True)
    shape = tiny.sample_shape
    one, pair = (flops(sidenet_variants.backbone_work(tiny, cfg, shape)) for cfg in (False, True))
    assert one > 0 and pair == 2 * one
    counts = {}
    for head in ("gated", "poly"):
        net = sidenet_variants.sidenet_at({"output_head": head, "width": 32, "depth": 2}, shape)
        counts[head] = [flops(sidenet_variants.interval_work(net, cfg, shape)) for cfg in (False, True)]
        assert counts[head][1] == 2 * counts[head][0]
    assert counts["poly"][0] < 0.55 * counts["gated"][0]  # 2 trunk passes per interval instead of 4 offsets
