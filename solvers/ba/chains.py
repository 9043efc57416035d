"""The pieces of a training chain (docs/ba-solver.md, "Chain training"): where a chain
starts (``noise_starts``: a share of them at t = 1), the signed step it takes, and the SideNet's no-grad simulation of that step (or, with
``chain_steps: exact``, the backbone's own trajectory to the step's end)."""
from __future__ import annotations

from typing import Any, Optional

import torch

from solverbench.backbone import has_data
from solvers.ba.config import SideNetConfig
from solvers.ba.quadrature import QuadratureRule
from solvers.ba.sidenet import SideNet


def backbone_velocity(backbone: Any, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor],
                      autocast: Optional[torch.dtype] = None) -> torch.Tensor:
    """The frozen backbone's ``v(x, t, y)``, per-sample ``t``; never a gradient.  With ``autocast``
    (a reduced precision) the backbone runs under ``torch.autocast`` and ``v`` comes back in ``x``'s dtype."""
    with torch.no_grad():
        if autocast is None:
            return backbone(x, t, y)
        with torch.autocast(x.device.type, dtype=autocast):
            return backbone(x, t, y).to(x.dtype)


def backbone_autocast(config: SideNetConfig, device: Any) -> Optional[torch.dtype]:
    """The precision the chains run the backbone in: the official recipe's float16 autocast
    (bfloat16 off CUDA, where float16 autocast is slow or missing); full precision otherwise."""
    if config.optimisation.recipe != "official":
        return None
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def signed_steps(t: torch.Tensor, rate: float, generator: torch.Generator, min_room: float = 0.0,
                 inward_at_noise: bool = False) -> torch.Tensor:
    """Signed steps ``h``: toward data (``h > 0``) or noise with probability 1/2 each, sizes from
    an exponential law of rate ``lambda`` truncated at the distance to the end of [0, 1]
    (``t`` toward data, ``1 - t`` toward noise; at least ``min_room``), drawn by inverting its CDF.
    ``inward_at_noise``: a chain at ``t = 1`` steps toward data, the only way there is (``noise_starts``)."""
    toward_data = torch.rand(t.shape, generator=generator, dtype=torch.float64) < 0.5
    if inward_at_noise:
        toward_data |= t.double().cpu() >= 1
    room = torch.where(toward_data, t.double().cpu(), 1.0 - t.double().cpu())
    if min_room > 0:
        room = room.clamp(min=min_room)
    u = torch.rand(t.shape, generator=generator, dtype=torch.float64)
    size = -torch.log1p(-u * -torch.expm1(-rate * room)) / rate  # in [0, room]
    size = torch.minimum(size, room)  # guard the last ulp
    return torch.where(toward_data, size, -size).to(t)


def simulate_step(sidenet: SideNet, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
                  y: Optional[torch.Tensor], rule: QuadratureRule) -> torch.Tensor:
    """``x' = x - h sum_i w_i (v + S(x, v, t, c_i h, y))`` (no grad): the chain's next state."""
    with torch.no_grad():
        k = len(rule.nodes)
        reps = (k,) + (1,) * (x.dim() - 1)
        c = torch.tensor(rule.nodes, dtype=h.dtype, device=h.device).repeat_interleave(len(x))
        v_hat = sidenet.velocity(x.repeat(reps), v.repeat(reps), t.repeat(k), c * h.repeat(k),
                                 None if y is None else y.repeat(k))
        drift = rule.combine(list(v_hat.split(len(x))))
        return x - h.reshape(-1, *(1,) * (x.dim() - 1)) * drift


EXACT_TOLERANCE = 1e-6  # rtol = atol of the exact chain steps' Dormand-Prince solve


def exact_step(backbone: Any, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor,
               y: Optional[torch.Tensor]) -> torch.Tensor:
    """``x' = x(t - h)`` on the backbone's own trajectory through ``(x, t)`` (no grad): one batched adaptive
    Dormand-Prince solve of ``dz/ds = -h v(z, t - s h)`` over ``s`` in [0, 1], in float64, so that every
    chain keeps its own ``h``.  A distillation target: the step the reference solver would take."""
    from torchdiffeq import odeint  # here, not at the top: it imports scipy (half a second) for every command

    h64 = h.double().reshape(-1, *(1,) * (x.dim() - 1))

    def velocity(s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -h64 * backbone(z, (t.double() - s * h.double()), y).double()

    span = torch.tensor([0.0, 1.0], dtype=torch.float64, device=x.device)
    with torch.no_grad():
        end = odeint(velocity, x.double(), span, rtol=EXACT_TOLERANCE, atol=EXACT_TOLERANCE, method="dopri5")[-1]
    return end.to(x.dtype)


def drop_labels(y: Optional[torch.Tensor], null_label: Optional[int], p: float,
                generator: torch.Generator) -> Optional[torch.Tensor]:
    """Each label replaced by the null label with probability ``p`` (one SideNet for both CFG branches)."""
    if y is None or null_label is None or p == 0:
        return y
    drop = torch.rand(y.shape, generator=generator) < p
    return torch.where(drop.to(y.device), torch.full_like(y, null_label), y)


def draw_labels(backbone: Any, n: int, generator: torch.Generator, device: str) -> Optional[torch.Tensor]:
    """``n`` labels uniform over the backbone's classes (None where it has none)."""
    if not backbone.num_classes:
        return None
    return torch.randint(backbone.num_classes, (n,), generator=generator).to(device)


def data_start(backbone: Any, n: int, generator: torch.Generator, device: str):
    """``x = (1 - t) x0 + t eps`` with data ``(x0, y)`` from the backbone, ``t ~ U(0, 1)``."""
    x0, y = backbone.sample_data(n, generator)
    x0 = x0.to(device, torch.float32)
    t = torch.rand(n, generator=generator).to(device)
    eps = torch.randn(x0.shape, generator=generator).to(device)
    tb = t.reshape(-1, *(1,) * (x0.dim() - 1))
    return (1 - tb) * x0 + tb * eps, t, None if y is None else y.to(device)


def noise_start(backbone: Any, n: int, generator: torch.Generator, device: str, steps: int,
                autocast: Optional[torch.dtype] = None):
    """Data-free start: noise at t = 1 carried to ``t ~ U(0, 1)`` by ``steps`` Heun steps of the
    frozen backbone (per-sample step ``(1 - t) / steps``), labels uniform over the classes."""
    x = torch.randn(n, *backbone.sample_shape, generator=generator).to(device)
    t_end = torch.rand(n, generator=generator).to(device)
    y = draw_labels(backbone, n, generator, device)
    dt = ((1 - t_end) / steps).reshape(-1, *(1,) * (x.dim() - 1))
    t = torch.ones(n, device=device)
    for _ in range(steps):
        v = backbone_velocity(backbone, x, t, y, autocast)
        x_euler = x - dt * v
        t_next = t - dt.flatten()
        x = x - dt * 0.5 * (v + backbone_velocity(backbone, x_euler, t_next, y, autocast))
        t = t_next
    return x, t_end, y


def move_to_noise(x: torch.Tensor, t: torch.Tensor, share: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each chain moved, with probability ``share``, to ``t = 1`` at fresh pure noise: where every
    sampling trajectory starts, and the first interval of a few-step solve asks its largest offsets."""
    moved = (torch.rand(t.shape, generator=generator) < share).to(x.device)
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return torch.where(moved.reshape(-1, *(1,) * (x.dim() - 1)), noise, x), torch.where(moved, torch.ones_like(t), t)


def resolve_data_mode(backbone: Any, mode: str) -> str:
    """``auto``: ``data`` where the backbone can draw data, else ``noise`` (``train_sidenet``
    says so in one line on stderr)."""
    if mode == "auto":
        return "data" if has_data(backbone) else "noise"
    if mode == "data" and not has_data(backbone):
        raise ValueError(f"SideNet setting data='data', but {type(backbone).__name__} cannot draw data samples; "
                         "use data='noise' (chains from noise) or 'auto'")
    return mode


def chain_start(backbone: Any, config: SideNetConfig, n: int, generator: torch.Generator, device: str):
    """Where ``n`` chains start: ``(x, t, y)``, labels dropped to the null label at rate ``label_dropout``, a
    share ``noise_starts`` of them at ``t = 1``."""
    chains = config.chains
    if resolve_data_mode(backbone, chains.data) == "data":
        x, t, y = data_start(backbone, n, generator, device)
    else:
        x, t, y = noise_start(backbone, n, generator, device, chains.noise_steps, backbone_autocast(config, device))
    y = drop_labels(y, backbone.null_label, config.optimisation.label_dropout, generator)
    if chains.noise_starts > 0:
        x, t = move_to_noise(x, t, chains.noise_starts, generator)
    return x, t, y
