"""``diffusion``: a diffusion model presented as a flow by the exact change of variables.

The model is

- a network predicting the noise, the data or v on a VP schedule of discrete timesteps
  (``model=``): a diffusers ``UNet2DModel`` or ``UNet2DConditionModel`` from a local folder
  (``backbones/diffusion/unets.py``), with its schedule from the pipeline folder's scheduler
  config or from ``schedule=`` (the keys of a diffusers scheduler config:
  ``backbones/diffusion/scheduler_config.py``); or such a U-Net, or any network called as
  ``net(x, timestep, class_labels=labels)``, given in Python with its ``schedule``;
- or an EDM denoiser ``D(x, sigma, class_labels=labels)`` (``denoiser=``, VE: alpha = 1) trained
  for ``sigma_min <= sigma <= sigma_max``.

At a flow time t in the model's range ``t_range = (t_min, t_max)`` the velocity is
``eps_hat - x0_hat`` of the model's prediction at ``x_s = (alpha + sigma) x_t`` and the model time
of t (``backbones/diffusion/paths.py``, ``backbones/diffusion/schedules.py``).  Outside the range
(solverbench's grids start at t = 1 and may evaluate at t = 0) the model is evaluated at the
nearest end ``t_end`` of its range on the state as it is (``x_s = (alpha_end + sigma_end) x_t``), and
the prediction the state does not determine is held: the data prediction above ``t_max``, the noise
prediction below ``t_min`` (``paths.velocity``).  The velocity is finite everywhere and continuous
in t.  The derivation is in docs/backbones/diffusion.md.

Labels: a U-Net's class table has ``num_class_embeds`` rows; with ``null_label`` (its last row, a model
trained with label dropout) the labels are 0..num_class_embeds - 2 and classifier-free guidance works.
A network or denoiser given in Python declares ``num_classes`` and, for guidance, ``null_label =
num_classes``.  ``to_images`` (1 or 3 channels) quantises pixels in [-1, 1] as diffusers' pipelines do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from backbones.diffusion.paths import PREDICTIONS, eps_and_x0, velocity
from backbones.diffusion.scheduler_config import model_schedule, read_scheduler_config
from backbones.diffusion.schedules import EDMSchedule, VPSchedule
from backbones.diffusion.unets import (UNetLayout, call_unet, folder_digest, is_unet, load_unet, model_folder,
                                       module_digest, unet_layout)
from solverbench import Backbone, register_backbone

EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0
IMAGE_CHANNELS = (1, 3)


@register_backbone("diffusion")
class DiffusionBackbone(Backbone):
    """A diffusion model (noise, data or v prediction on a VP schedule; or an EDM denoiser) as a flow velocity."""

    path_params = ("model",)

    def __init__(self, model: str | Path | Callable | None = None, *, schedule: Optional[Mapping[str, Any]] = None,
                 prediction_type: Optional[str] = None, dtype: Optional[str] = None, null_label: Optional[int] = None,
                 denoiser: Optional[Callable] = None, sigma_min: Optional[float] = None,
                 sigma_max: Optional[float] = None, sample_shape: Optional[Sequence[int]] = None,
                 num_classes: Optional[int] = None):
        super().__init__()
        if (model is None) == (denoiser is None):
            raise ValueError("diffusion needs model=FOLDER (a diffusers U-Net's local folder) or a network, or "
                             "denoiser=D (an EDM denoiser D(x, sigma, class_labels)): exactly one of them")
        self.layout: Optional[UNetLayout] = None
        if denoiser is not None:
            given = [k for k, v in (("schedule", schedule), ("prediction_type", prediction_type), ("dtype", dtype))
                     if v is not None]
            if given:
                raise ValueError(f"diffusion: an EDM denoiser predicts the data on its own VE schedule (sigma_min, "
                                 f"sigma_max); {', '.join(given)} apply to model= only")
            self.schedule: VPSchedule | EDMSchedule = EDMSchedule(
                EDM_SIGMA_MIN if sigma_min is None else sigma_min, EDM_SIGMA_MAX if sigma_max is None else sigma_max)
            self.prediction = "sample"
            self.net, self.call = denoiser, "denoiser"
            self.weights = network_identity(denoiser)
        else:
            if sigma_min is not None or sigma_max is not None:
                raise ValueError("diffusion: sigma_min and sigma_max are an EDM denoiser's (denoiser=D); a model's "
                                 "noise levels come from its schedule")
            self._init_vp(model, schedule, prediction_type, dtype)
        self._init_shape_and_labels(sample_shape, num_classes, null_label)
        self.t_range = self.schedule.t_range

    def _init_vp(self, model: Any, schedule: Optional[Mapping[str, Any]], prediction_type: Optional[str],
                 dtype: Optional[str]) -> None:
        if prediction_type is not None and prediction_type not in PREDICTIONS:
            raise ValueError(f"diffusion: unknown prediction_type {prediction_type!r}; known: {', '.join(PREDICTIONS)}")
        if isinstance(model, (str, Path)):
            folder = model_folder(model)
            self.net, self.layout = load_unet(folder, "float32" if dtype is None else dtype)
            file_config = folder.scheduler_config
            self.weights = {"folder_sha256": folder_digest(folder), "dtype": str(self.net.dtype).removeprefix("torch.")}
        elif callable(model):
            if dtype is not None:
                raise ValueError("diffusion: dtype applies to a model loaded from a folder; a network given in Python "
                                 "runs in its own dtype (cast it before)")
            self.net, file_config = model, None
            self.layout = (unet_layout(model.config, f"network {type(model).__name__}", type(model).__name__)
                           if is_unet(model) else None)
            self.weights = network_identity(model)
        else:
            raise ValueError(f"diffusion: model must be a local folder or a network, got {type(model).__name__}")
        self.call = "unet" if self.layout is not None else "network"
        if file_config is not None and schedule is not None:
            raise ValueError(f"diffusion: model folder {str(model)!r} has its scheduler config "
                             f"({file_config.name}); leave schedule out")
        if file_config is None and schedule is None:
            raise ValueError("diffusion: the model's noise schedule is needed: give schedule={num_train_timesteps, "
                             "beta_start, beta_end, beta_schedule or trained_betas, prediction_type} (the keys of its "
                             "diffusers scheduler config), or a pipeline folder with scheduler/scheduler_config.json")
        if schedule is not None and not isinstance(schedule, Mapping):
            raise ValueError(f"diffusion: schedule must be a mapping of diffusers scheduler config keys, got {schedule!r}")
        if file_config is not None:
            read = model_schedule(read_scheduler_config(file_config), f"scheduler config {str(file_config)!r}")
        else:
            read = model_schedule(dict(schedule), "diffusion: schedule")
        if None not in (prediction_type, read.prediction_type) and prediction_type != read.prediction_type:
            source = f"scheduler config {str(file_config)!r}" if file_config is not None else "schedule"
            raise ValueError(f"diffusion: prediction_type {prediction_type!r} contradicts the {source}, whose "
                             f"prediction_type is {read.prediction_type!r}; leave one out or make them agree")
        self.prediction = prediction_type or read.prediction_type or "epsilon"  # diffusers' default
        self.schedule = read.vp_schedule()

    def _init_shape_and_labels(self, sample_shape: Optional[Sequence[int]], num_classes: Optional[int],
                               null_label: Optional[int]) -> None:
        if self.layout is not None:
            if sample_shape is not None and tuple(sample_shape) != self.layout.sample_shape:
                raise ValueError(f"diffusion: sample_shape {tuple(sample_shape)} contradicts the U-Net's "
                                 f"{self.layout.sample_shape} (in_channels, sample_size); leave it out")
            if num_classes is not None:
                raise ValueError("diffusion: a U-Net's classes are its class table's rows (num_class_embeds); leave "
                                 "num_classes out (null_label: the last row, for a model trained with label dropout)")
            rows = self.layout.num_class_embeds
            if null_label is not None and rows is None:
                raise ValueError(f"diffusion: null_label {null_label!r} given for an unconditional U-Net (no "
                                 "num_class_embeds)")
            if null_label is not None and null_label != rows - 1:
                raise ValueError(f"diffusion: null_label {null_label!r} must be the last row of the U-Net's class "
                                 f"table, {rows - 1}")
            sample_shape = self.layout.sample_shape
            num_classes = rows if null_label is None else rows - 1  # the null row is no class
        elif sample_shape is None:
            raise ValueError("diffusion: give sample_shape (the shape of one sample, e.g. [3, 32, 32]) with a "
                             "network that is not a diffusers U-Net")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise ValueError(f"diffusion: num_classes must be a positive integer, got {num_classes!r}")
        if null_label is not None and num_classes is None:
            raise ValueError(f"diffusion: null_label {null_label!r} given for an unconditional model (no num_classes)")
        if null_label is not None and null_label != num_classes:
            raise ValueError(f"diffusion: null_label must be num_classes ({num_classes}), the label after the "
                             f"classes, got {null_label!r}")
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.num_classes, self.null_label = num_classes, null_label

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The velocity at flow times t (shape (batch,)); see the module docstring for t outside ``t_range``."""
        labels = self._labels(y, x)
        t = t.to(device=x.device, dtype=torch.float64).reshape(-1)
        t_end = t.clamp(*self.t_range)  # the model's time: the nearest end of its range outside it
        shape = (-1,) + (1,) * (x.dim() - 1)
        alpha, sigma = (c.reshape(shape).to(x.dtype) for c in self.schedule.coefficients(t_end))
        x_s = (alpha + sigma) * x
        out = self._predict(x_s, self.schedule.model_time(t_end), labels)
        eps_hat, x0_hat = eps_and_x0(self.prediction, out, x_s, alpha, sigma)
        return velocity(x, t, eps_hat, x0_hat, self.t_range)

    def _predict(self, x_s: torch.Tensor, model_time: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """The network's prediction at ``x_s``, run in the network's dtype, back in the state's."""
        dtype = network_dtype(self.net) or x_s.dtype
        if self.call == "unet":
            out = call_unet(self.net, self.layout, x_s.to(dtype), model_time, labels)
        else:
            out = self.net(x_s.to(dtype), model_time, class_labels=labels)
            out = getattr(out, "sample", out)
        if not isinstance(out, torch.Tensor) or out.shape != x_s.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"diffusion: the {self.call} returned {got} for samples of shape {tuple(x_s.shape)}; a "
                             "prediction has the samples' shape")
        return out.to(x_s.dtype)

    def _labels(self, y: Optional[torch.Tensor], x: torch.Tensor) -> Optional[torch.Tensor]:
        if self.num_classes is None:
            if y is not None:
                raise ValueError("diffusion: this model is unconditional; it takes no labels")
            return None
        if y is None:
            if self.null_label is None:
                raise ValueError("diffusion: this class-conditional model has no null label (give null_label for a "
                                 "model trained with label dropout); it needs labels")
            return torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        y = y.to(x.device).long()
        top = self.num_classes if self.null_label is None else self.null_label + 1
        if torch.any((y < 0) | (y >= top)):
            raise ValueError(f"diffusion: labels must lie in [0, {top - 1}]"
                             + (f" (null label {self.null_label})" if self.null_label is not None else ""))
        return y

    def identity(self) -> dict[str, Any]:
        return {"class": "diffusion", "schedule": self.schedule.identity(), "prediction": self.prediction,
                "network": self.weights, "call": self.call, "sample_shape": list(self.sample_shape),
                "num_classes": self.num_classes, "null_label": self.null_label}

    @property
    def to_images(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """Pixels (N, 1 or 3, H, W) in [-1, 1] -> uint8 images, as diffusers' pipelines quantise them
        (``round(255 clamp(x / 2 + 0.5, 0, 1))``); None for samples that are not images (latents, vectors)."""
        is_image = len(self.sample_shape) == 3 and self.sample_shape[0] in IMAGE_CHANNELS
        return pixels_to_uint8 if is_image else None


def pixels_to_uint8(samples: torch.Tensor) -> torch.Tensor:
    return ((samples.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def network_dtype(net: Any) -> Optional[torch.dtype]:
    """The dtype of a network's floating-point weights (None: a function, or a module without them)."""
    if isinstance(net, nn.Module):
        return next((p.dtype for p in net.parameters() if p.is_floating_point()), None)
    return None


def network_identity(net: Any) -> dict[str, Any]:
    """What identifies a network given in Python: its class and, for a module, a digest of its state (a plain
    function is known by its qualified name only)."""
    name = f"{type(net).__module__}.{type(net).__qualname__}" if isinstance(net, nn.Module) else \
        f"{getattr(net, '__module__', '?')}.{getattr(net, '__qualname__', type(net).__qualname__)}"
    return {"network": name, **({"state_sha256": module_digest(net)} if isinstance(net, nn.Module) else {})}
