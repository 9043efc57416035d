"""The ``diffusion`` backbone: diffusion models as flows by the exact change of variables.

1. Exactness: the gmm data's closed-form diffusion models (noise, data and v prediction on VP
   schedules, EDM's denoiser; tests/backbones/gmm_diffusion.py) wrapped by the backbone give the gmm
   backbone's exact flow velocity, to 1e-10 in float64, over the model's range; outside it the rule
   of the docs (the data prediction held above t_max, the noise prediction below t_min).
2. Parity: flow-dpm on a tiny random DDPM U-Net is diffusers' DPMSolverMultistepScheduler sampling the
   raw U-Net, on the flow grid of the scheduler's sigmas.
3. Loading from saved folders, the refusals, class labels and guidance.
4. A sweep through the engine; the grid configs/cifar10_ddpm.yaml; the named time grids.
"""
import math
from pathlib import Path

import pytest
import torch
import yaml

import solverbench as sb
from backbones.diffusion.backbone import DiffusionBackbone
from backbones.diffusion.paths import PREDICTIONS
from backbones.gmm import GaussianMixture
from gmm_diffusion import EDMDenoiser, VPNetwork, log_sigma_table, posterior_means  # tests/backbones/
from solverbench.grid import GridError, parse_grid
from solverbench.timegrid import make_time_grid

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:.*should be kept in float32.*")

ROOT = Path(__file__).resolve().parents[2]
VP_SCHEDULES = {  # diffusers' beta schedules (DDPM's, Stable Diffusion's, the cosine one)
    "linear": {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
    "scaled_linear": {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                      "beta_schedule": "scaled_linear"},
    "squaredcos_cap_v2": {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},
}


def alphas_cumprod(schedule):
    return diffusers.DDPMScheduler(**schedule).alphas_cumprod


def path_states(gmm, t, seed=0):
    """``(x_t, y)``: states of the straight path at times ``t`` from the gmm's data, labels with some null."""
    g = torch.Generator().manual_seed(seed)
    x0, y = gmm.sample_data(len(t), g)
    y[::3] = gmm.null_label
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    return (1 - t[:, None]) * x0.double() + t[:, None] * eps, y


def vp_backbone(gmm, prediction, schedule):
    network = VPNetwork(gmm, prediction, log_sigma_table(alphas_cumprod(schedule)))
    return DiffusionBackbone(network, schedule={**schedule, "prediction_type": prediction},
                             sample_shape=gmm.sample_shape, num_classes=gmm.num_classes, null_label=gmm.null_label)


def edm_backbone(gmm, sigma_min=0.002, sigma_max=80.0):
    return DiffusionBackbone(denoiser=EDMDenoiser(gmm), sigma_min=sigma_min, sigma_max=sigma_max,
                             sample_shape=gmm.sample_shape, num_classes=gmm.num_classes, null_label=gmm.null_label)


def tiny_unet(dtype=torch.float32, seed=0, **config):
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, **config)
    return unet.to(dtype).eval().requires_grad_(False)


# 1. exactness on the gmm's data ------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", VP_SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_vp_models_give_the_exact_flow_velocity(prediction, schedule):
    gmm = GaussianMixture("gmm-smooth")
    backbone = vp_backbone(gmm, prediction, VP_SCHEDULES[schedule])
    t_min, t_max = backbone.t_range
    t = torch.cat([torch.linspace(t_min, t_max, 61, dtype=torch.float64), torch.tensor([t_min, t_max], dtype=torch.float64)])
    x, y = path_states(gmm, t)
    torch.testing.assert_close(backbone(x, t, y), gmm(x, t, y), rtol=1e-10, atol=1e-10)


def test_an_edm_denoiser_gives_the_exact_flow_velocity():
    gmm = GaussianMixture("gmm2d")
    backbone = edm_backbone(gmm)
    assert backbone.t_range == (0.002 / 1.002, 80 / 81)
    t = torch.linspace(*backbone.t_range, 61, dtype=torch.float64)
    x, y = path_states(gmm, t)
    torch.testing.assert_close(backbone(x, t, y), gmm(x, t, y), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("schedule", VP_SCHEDULES)
def test_a_vp_range_is_the_flow_times_of_the_training_timesteps(schedule):
    abar = alphas_cumprod(VP_SCHEDULES[schedule]).double()
    ends = torch.sqrt((1 - abar) / abar)[[0, -1]]
    backbone = vp_backbone(GaussianMixture("gmm2d"), "epsilon", VP_SCHEDULES[schedule])
    assert backbone.t_range == pytest.approx((ends / (1 + ends)).tolist(), rel=1e-7)
    assert 0 < backbone.t_range[0] < backbone.t_range[1] < 1


@pytest.mark.parametrize("make", ["epsilon", "sample", "v_prediction", "edm"])
def test_outside_its_range_the_model_holds_x0_above_and_eps_below(make):
    """Above t_max: v = (x - x0_hat) / t, below t_min: v = (eps_hat - x) / (1 - t), the predictions those of the
    range's end on the state as it is (x_s = (alpha_end + sigma_end) x); finite at t = 1 and t = 0, continuous."""
    gmm = GaussianMixture("gmm2d")
    backbone = edm_backbone(gmm) if make == "edm" else vp_backbone(gmm, make, VP_SCHEDULES["linear"])
    t_min, t_max = backbone.t_range
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    y = torch.randint(gmm.num_classes + 1, (8,), generator=g)

    def predictions_at(t_end):
        alpha, sigma = backbone.schedule.coefficients(torch.full((8,), t_end, dtype=torch.float64))
        return posterior_means(gmm, (alpha + sigma)[:, None] * x, alpha, sigma, y)

    eps_top, x0_top = predictions_at(t_max)
    eps_low, x0_low = predictions_at(t_min)
    for t in (1.0, 0.999999, (1 + t_max) / 2):
        v = backbone(x, torch.full((8,), t, dtype=torch.float64), y)
        torch.testing.assert_close(v, (x - x0_top) / t, rtol=1e-9, atol=1e-9)
    for t in (0.0, 1e-9, t_min / 2):
        v = backbone(x, torch.full((8,), t, dtype=torch.float64), y)
        torch.testing.assert_close(v, (eps_low - x) / (1 - t), rtol=1e-9, atol=1e-9)
    for end, side in ((t_max, 1 + 1e-12), (t_min, 1 - 1e-12)):
        inside = backbone(x, torch.full((8,), end, dtype=torch.float64), y)
        outside = backbone(x, torch.full((8,), end * side, dtype=torch.float64), y)
        torch.testing.assert_close(inside, outside, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("make", ["epsilon", "sample", "v_prediction", "edm"])
def test_a_whole_sample_from_one_to_zero_is_finite(make):
    gmm = GaussianMixture("gmm2d")
    backbone = edm_backbone(gmm) if make == "edm" else vp_backbone(gmm, make, VP_SCHEDULES["squaredcos_cap_v2"])
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.arange(16) % gmm.num_classes
    for solver in ("heun", "flow-dpm"):  # heun evaluates at t = 0, flow-dpm at t = 1
        out = sb.sample(backbone, solver, noise, labels, nfe=12, schedule={"name": "karras"}, cfg_scale=1.5)
        assert torch.isfinite(out.samples).all()


# 2. parity with diffusers' DPM-Solver++ on a DDPM U-Net -----------------------------------------------------------

def diffusers_dpm_sample(unet, noise, steps):
    """DPMSolverMultistepScheduler (noise prediction, dpmsolver++, order 2, its default timesteps, final sigma 0)
    sampling the raw U-Net from ``noise``; returns the samples and the scheduler's sigmas (float64)."""
    scheduler = diffusers.DPMSolverMultistepScheduler(
        prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
    scheduler.set_timesteps(steps)
    x = noise.clone()
    for t in scheduler.timesteps:
        out = unet(x, t).sample
        x = scheduler.step(out, t, x).prev_sample
    return x, scheduler.sigmas.double(), scheduler.timesteps


def flow_dpm_sample(unet, noise, sigmas):
    """flow-dpm on the wrapped U-Net along t_i = sigma_i / (1 + sigma_i), from the same noise as a state of the
    straight path (x_t = x_s / (alpha + sigma)); the samples are at sigma = 0, where x_t = x_s."""
    backbone = DiffusionBackbone(unet, schedule=dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                                     beta_schedule="linear", prediction_type="epsilon"))
    grid = sigmas / (1 + sigmas)
    alpha = 1 / torch.sqrt(1 + sigmas[0] ** 2)  # VP: alpha^2 + sigma^2 = 1 with sigma / alpha = sigmas[0]
    x_t = noise / (alpha + sigmas[0] * alpha)
    return sb.sample(backbone, "flow-dpm", x_t.to(noise.dtype), time_grid=grid, partial=True).samples


@pytest.mark.parametrize("steps", [5, 10])
def test_flow_dpm_on_a_wrapped_unet_is_diffusers_dpm_solver(steps):
    """float32: the same samples to float32 rounding (1e-5 of their scale; the flow time a float32 state carries
    rounds the network's timestep by up to ~1e-4)."""
    unet = tiny_unet()
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(steps))
    with torch.no_grad():
        theirs, sigmas, _ = diffusers_dpm_sample(unet, noise, steps)
        ours = flow_dpm_sample(unet, noise, sigmas)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


@pytest.mark.parametrize("steps", [5, 10])
def test_in_float64_the_unet_sees_diffusers_own_timesteps(steps):
    """A float64 U-Net: every evaluation gets diffusers' integer timestep (to 1e-9), and the samples agree to
    the scheduler's own float32 arithmetic (DPMSolverMultistepScheduler steps in float32 whatever its input)."""
    unet = tiny_unet(torch.float64)
    seen = []
    unet.register_forward_pre_hook(lambda module, args: seen.append(torch.as_tensor(args[1]).double().flatten()[0]))
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    with torch.no_grad():
        theirs, sigmas, timesteps = diffusers_dpm_sample(unet, noise, steps)
        ours = flow_dpm_sample(unet, noise, sigmas)
    theirs_seen, ours_seen = seen[:steps], seen[steps:]
    assert torch.stack(theirs_seen).tolist() == timesteps.double().tolist()
    torch.testing.assert_close(torch.stack(ours_seen), timesteps.double(), rtol=0, atol=1e-9)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6 * theirs.abs().max().item())


# 3. folders, refusals, labels ---------------------------------------------------------------------------------

def save_pipeline(folder, unet, scheduler_class="DDPMScheduler", **config):
    """``folder`` as a pipeline's: unet/ and scheduler/scheduler_config.json."""
    unet.save_pretrained(folder / "unet")
    getattr(diffusers, scheduler_class)(**config).save_config(folder / "scheduler")
    return folder


def test_a_saved_pipeline_folder_loads_by_name_as_a_grid_names_it(tmp_path):
    unet = tiny_unet()
    folder = save_pipeline(tmp_path / "ddpm", unet, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2")
    grid = parse_grid({"backbones": [{"name": "diffusion", "params": {"model": str(folder)}}], "solvers": ["euler"],
                       "nfe": [2]})
    loaded = grid.backbones[0].instance
    assert loaded.prediction == "v_prediction" and loaded.sample_shape == (3, 8, 8) and loaded.num_classes is None
    in_memory = DiffusionBackbone(unet, schedule={"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"})
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([1.0, 0.5, 0.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), in_memory(x, t), rtol=0, atol=0)
    assert loaded.identity()["schedule"] == in_memory.identity()["schedule"]
    assert loaded.to_images(torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1)).flatten().tolist() == [0, 128, 255]


def test_a_model_folder_takes_its_schedule_as_parameters_and_honours_dtype(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "unet-only")
    backbone = sb.resolve_backbone("diffusion", model=str(tmp_path / "unet-only"), dtype="float64",
                                   schedule={"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012})
    assert {p.dtype for p in backbone.parameters()} == {torch.float64}
    assert backbone.prediction == "epsilon"  # diffusers' default
    out = sb.sample(backbone, "euler", torch.randn(2, 3, 8, 8, dtype=torch.float64), nfe=3)
    assert out.samples.dtype == torch.float64 and torch.isfinite(out.samples).all()


@pytest.mark.parametrize("params, message", [
    ({"model": "/no/such/folder"}, "no such model folder '/no/such/folder'"),
    ({"model": "UNET", "prediction_type": "eps"}, "unknown prediction_type 'eps'; known: epsilon, sample, v_prediction"),
    ({"model": "UNET", "schedule": {"beta_schedule": "linear", "use_flow_sigmas": True}},
     "sets use_flow_sigmas: True, flow sigmas"),
    ({"model": "UNET", "schedule": {"beta_schedule": "cosine"}}, "unknown beta_schedule 'cosine'; known: linear"),
    ({"model": "UNET", "schedule": {"beta_shedule": "linear"}}, "unknown key(s) 'beta_shedule'"),
    ({"model": "UNET", "schedule": {"prediction_type": "flow_prediction"}}, "prediction_type 'flow_prediction'"),
    ({"model": "UNET"}, "the model's noise schedule is needed"),
    ({"model": "FLOW"}, "is FlowMatchEulerDiscreteScheduler's, whose schedule is not VP"),
    ({"model": "EDM"}, "is EDMEulerScheduler's, whose schedule is not VP: it describes an EDM (VE) denoiser"),
    ({"model": "DDPM", "schedule": {"beta_schedule": "linear"}}, "has its scheduler config"),
    ({"model": "DDPM", "prediction_type": "sample"}, "prediction_type 'sample' contradicts"),
    ({"model": "DDPM", "null_label": 3}, "null_label 3 given for an unconditional U-Net"),
    ({"model": "DDPM", "sigma_max": 80}, "sigma_min and sigma_max are an EDM denoiser's"),
    ({}, "exactly one of them"),
])
def test_bad_parameters_are_refused_in_one_line(tmp_path, params, message):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "UNET")
    save_pipeline(tmp_path / "DDPM", unet)
    save_pipeline(tmp_path / "FLOW", unet, "FlowMatchEulerDiscreteScheduler")
    save_pipeline(tmp_path / "EDM", unet, "EDMEulerScheduler")
    params = {k: str(tmp_path / v) if k == "model" and not v.startswith("/") else v for k, v in params.items()}
    with pytest.raises(ValueError) as info:
        DiffusionBackbone(**params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_grid_naming_a_missing_folder_is_refused_naming_it(tmp_path):
    with pytest.raises(GridError, match=r"backbones\[0\]\.params\.model.*no such file or folder: .*missing"):
        parse_grid({"backbones": [{"name": "diffusion", "params": {"model": "missing"}}], "solvers": ["euler"],
                    "nfe": [2]}, path=tmp_path / "g.yaml")


def test_a_text_conditioned_unet_is_refused():
    unet = diffusers.UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                          layers_per_block=1, norm_num_groups=4, cross_attention_dim=8,
                                          down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    with pytest.raises(ValueError, match="UNet2DConditionModel with cross-attention blocks, which take prompt"):
        DiffusionBackbone(unet, schedule={})


@pytest.mark.parametrize("unet_class", ["UNet2DModel", "UNet2DConditionModel"])
def test_a_class_conditional_unet_with_its_null_label_guides(tmp_path, unet_class):
    """num_class_embeds = 4 with the last row the null label: 3 classes; the null label and guidance work."""
    torch.manual_seed(0)
    blocks = dict(down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    extra = {"mid_block_type": None, "cross_attention_dim": 8} if unet_class == "UNet2DConditionModel" else {}
    unet = getattr(diffusers, unet_class)(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                          layers_per_block=1, norm_num_groups=4, num_class_embeds=4, **blocks, **extra)
    folder = save_pipeline(tmp_path / "cond", unet.eval())
    backbone = DiffusionBackbone(str(folder), null_label=3)
    assert (backbone.num_classes, backbone.null_label) == (3, 3)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0.7, 0.7])
    with torch.no_grad():
        unguided = backbone(x, t)  # no labels: the null label
        torch.testing.assert_close(unguided, backbone(x, t, torch.tensor([3, 3])))
        assert not torch.allclose(unguided, backbone(x, t, torch.tensor([0, 1])))
        out = sb.sample(backbone, "flow-dpm", torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), nfe=4,
                        cfg_scale=2.0)
    assert torch.isfinite(out.samples).all()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\] \(null label 3\)"):
        backbone(x, t, torch.tensor([4, 0]))
    without_null = DiffusionBackbone(str(folder))
    assert (without_null.num_classes, without_null.null_label) == (4, None)
    with pytest.raises(ValueError, match="has no null label"):
        without_null(x, t)
    with pytest.raises(ValueError, match="must be the last row of the U-Net's class table, 3"):
        DiffusionBackbone(str(folder), null_label=0)


# 4. the engine, the shipped grid, the time grids ----------------------------------------------------------------

def test_a_sweep_runs_on_a_wrapped_unet(tmp_path):
    from solverbench.engine import run_grid

    folder = save_pipeline(tmp_path / "ddpm", tiny_unet())
    grid = parse_grid({"name": "tiny", "backbones": [{"name": "diffusion", "params": {"model": str(folder)}}],
                       "solvers": ["euler", {"name": "flow-dpm", "params": {"order": 2}}], "nfe": [4],
                       "schedule": {"name": "logsnr", "sigma_min": 0.01, "sigma_max": 157.0},
                       "num_samples": 4, "batch_size": 4, "metrics": ["trajectory_error"],
                       "reference": {"rtol": 1e-3, "atol": 1e-3}})
    rows = run_grid(grid, tmp_path / "results", progress=False).frame
    assert len(rows) == 2 and (rows["status"] == "ok").all()
    assert rows["trajectory_error"].notna().all() and (rows["trajectory_error"] > 0).all()


SOLVER_LABELS = ["flow-dpm(order=2)", "flow-unipc(variant=bh2, order=2)", "heun", "euler", "ba(rule=lobatto, nodes=2, sidenet=off)"]


def test_the_cifar10_grid_parses_on_a_saved_model(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "cifar10_ddpm.yaml").read_text())
    (backbone,) = raw["backbones"]
    assert backbone["name"] == "diffusion"
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    folder = save_pipeline(tmp_path / "ddpm-cifar10-32", unet, beta_schedule="linear", clip_sample=True)
    assert backbone["params"]["model"] == "../models/ddpm-cifar10-32"
    raw["backbones"] = [{**backbone, "params": {**backbone["params"], "model": str(folder)}}]
    raw["device"] = "cpu"  # the grid's cuda is refused where there is none
    grid = parse_grid(raw, path=ROOT / "configs" / "cifar10_ddpm.yaml")
    assert [spec.label for spec in grid.solvers] == SOLVER_LABELS
    assert {nfe for spec in grid.solvers for nfe in spec.budgets} == {5, 6, 8, 10}
    assert [make_time_grid(s, 2).tolist()[0] for s in grid.schedules] == [1.0, 1.0, 1.0]


def ve_levels(grid):
    t = grid[1:-1]
    return t / (1 - t)


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_the_karras_grid_is_edms_noise_levels_in_flow_time(n):
    grid = make_time_grid({"name": "karras", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}, n)
    assert grid.dtype == torch.float64 and len(grid) == n + 1 and grid[0] == 1 and grid[-1] == 0
    i = torch.arange(1, n, dtype=torch.float64)
    want = (80 ** (1 / 7) + i / max(n - 1, 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # levels 1..N-1
    torch.testing.assert_close(ve_levels(grid), want, rtol=1e-12, atol=0)
    if n > 1:
        assert grid[-2].item() == pytest.approx(0.002 / 1.002, rel=1e-12)  # the last level is sigma_min


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_the_logsnr_grid_steps_equally_in_log_snr(n):
    grid = make_time_grid({"name": "logsnr", "sigma_min": 0.01, "sigma_max": 157.0}, n)
    assert len(grid) == n + 1 and grid[0] == 1 and grid[-1] == 0
    lambdas = torch.log((1 - grid[1:-1]) / grid[1:-1])
    step = (math.log(157.0) - math.log(0.01)) / max(n - 1, 1)
    want = -math.log(157.0) + step * torch.arange(1, n, dtype=torch.float64)
    torch.testing.assert_close(lambdas, want, rtol=0, atol=1e-12)
    by_times = make_time_grid({"name": "logsnr", "t_min": 0.01 / 1.01, "t_max": 157.0 / 158.0}, n)
    torch.testing.assert_close(by_times, grid, rtol=1e-12, atol=0)


@pytest.mark.parametrize("spec, message", [
    ({"name": "logsnr", "sigma_min": 0.1, "t_min": 0.1}, "give sigma_min or t_min, not both"),
    ({"name": "karras", "sigma_min": 10, "sigma_max": 1}, "sigma_min < sigma_max"),
    ({"name": "karras", "rho": 0}, "rho must be a positive number"),
    ({"name": "logsnr", "t_max": 1.0}, "t_max must lie in (0, 1)"),
])
def test_bad_grid_settings_are_refused(spec, message):
    with pytest.raises(ValueError) as info:
        make_time_grid(spec, 4)
    assert message in str(info.value)
