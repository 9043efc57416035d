"""2-D toy distributions, each scaled to roughly unit spread, drawn from a torch.Generator.

- ``checkerboard``: uniform on the 8 dark squares of a 4x4 board over [-2, 2]^2;
- ``moons``: scikit-learn's two interleaving half circles (noise 0.05), centred, x1.5;
- ``eight-gaussians``: 8 equal Gaussians (std 0.15) on the circle of radius 2;
- ``spirals``: two interleaved spiral arms of 1.5 turns, radius up to about 2.4, noise 0.05.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

ToySampler = Callable[[int, torch.Generator], torch.Tensor]


def checkerboard(n: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.rand(n, generator=generator) * 4 - 2
    row = torch.randint(2, (n,), generator=generator) * 2 - 2  # -2 or 0
    y = torch.rand(n, generator=generator) + row + torch.floor(x).remainder(2)  # dark squares alternate per column
    return torch.stack([x, y], dim=1)


def moons(n: int, generator: torch.Generator) -> torch.Tensor:
    from sklearn.datasets import make_moons

    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    points, _ = make_moons(n, noise=0.05, random_state=seed)
    return (torch.tensor(points, dtype=torch.float32) - torch.tensor([0.5, 0.25])) * 1.5


def eight_gaussians(n: int, generator: torch.Generator) -> torch.Tensor:
    angle = torch.randint(8, (n,), generator=generator) * (math.pi / 4)
    centres = 2.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + 0.15 * torch.randn(n, 2, generator=generator)


def spirals(n: int, generator: torch.Generator) -> torch.Tensor:
    turn = torch.sqrt(torch.rand(n, generator=generator)) * 3 * math.pi  # 1.5 turns, denser outside
    arm = torch.stack([-torch.cos(turn) * turn, torch.sin(turn) * turn], dim=1) / 4
    sign = torch.randint(2, (n, 1), generator=generator) * 2 - 1  # the second arm is the first, rotated by pi
    return sign * arm + 0.05 * torch.randn(n, 2, generator=generator)


TOY_DATASETS: dict[str, ToySampler] = {
    "checkerboard": checkerboard,
    "moons": moons,
    "eight-gaussians": eight_gaussians,
    "spirals": spirals,
}
