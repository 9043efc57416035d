"""solverbench's solvers in diffusers' flow pipelines (backbones.diffusers_flow.pipelines), on the tiny random SD3,
Flux and Sana models and pipelines of test_diffusers_flow.py:

1. ``SolverbenchScheduler`` in the denoising loops written from StableDiffusion3Pipeline's and FluxPipeline's source
   gives the latents of ``solverbench.sample`` on the ``diffusers`` backbone with the same solver, NFE, time grid and
   noise (euler, flow-dpm, flow-unipc with and without classifier-free guidance; ba with a SideNet checkpoint, without);
2. the same scheduler inside the pipelines' own ``__call__`` (SD3, Flux, Sana) gives ``generate``'s latents, and the
   SD3 pipeline's decoded images are ``generate``'s;
3. ``generate`` with BA and guidance is ``sample`` on the backbone of the prompts ``encode-prompts`` writes;
4. the one-line refusals, made before any prompt is encoded.
"""
import numpy as np
import pytest
import torch

import solverbench as sb
from backbones.diffusers_flow.architectures.flux import unpack
from backbones.diffusers_flow.backbone import DiffusersFlowBackbone
from backbones.diffusers_flow.encoding import encode_prompts
from backbones.diffusers_flow.pipelines import PipelineError, SolverbenchScheduler, generate
from solvers.ba.checkpoint import save_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.sidenet import sidenet_for
from test_diffusers_flow import FLUX_SCHEDULER, PROMPTS, flux_pipeline_loop, noise_and_labels
from test_diffusers_flow import flux, flux_and_sana_pipelines, sana, sd3, sd3_pipeline  # noqa: F401  (fixtures)

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:.*should be kept in float32.*")

STEPS = 4


def sidenet_checkpoint(path, backbone):
    """A tiny SideNet for ``backbone`` with random (non-zero) weights, conditioned on its prompts' features."""
    config = SideNetConfig.from_settings({"width": 8, "depth": 1, "embed_dim": 8, "heads": 2})
    net = sidenet_for(backbone, config.network)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return save_checkpoint(path, raw=net, ema=net, config=config, stats={}, backbone=backbone)


@pytest.fixture(scope="module")
def sd3_setup(sd3, sd3_pipeline):
    """The whole tiny SD3 pipeline loaded from its folder (a transformer from a folder, as a checkpoint's check needs),
    the backbone on that folder with test_diffusers_flow's prompt set, and a SideNet checkpoint for it."""
    folder, _ = sd3_pipeline
    pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    backbone = DiffusersFlowBackbone(model=folder, prompts=sd3["prompts"])
    checkpoint = sidenet_checkpoint(sd3["root"] / "sd3-sidenet.pt", backbone)
    return {"pipe": pipe, "folder": folder, "backbone": backbone, "checkpoint": checkpoint,
            "tensors": sd3["tensors"], "root": sd3["root"]}


@pytest.fixture(scope="module")
def flux_setup(flux, tmp_path_factory):
    """A FluxPipeline around the tiny Flux transformer loaded from its folder (no VAE, no text encoders: the loop is
    given the embeddings), the backbone on that folder, a SideNet checkpoint for it."""
    transformer = diffusers.FluxTransformer2DModel.from_pretrained(flux["model"]).eval()
    pipe = diffusers.FluxPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER), vae=None,
                                  text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                  transformer=transformer)
    backbone = DiffusersFlowBackbone(model=flux["model"], prompts=flux["prompts"], resolution=64)
    checkpoint = sidenet_checkpoint(tmp_path_factory.mktemp("flux-sidenet") / "flux.pt", backbone)
    return {"pipe": pipe, "backbone": backbone, "checkpoint": checkpoint, "tensors": flux["tensors"]}


def sd3_loop(pipe, latents, tensors, labels, guidance_scale, steps):
    """StableDiffusion3Pipeline.__call__'s steps 5 and 7 as its source runs them, on the pipeline's transformer and
    scheduler: retrieve_timesteps (mu only with dynamic shifting), the doubled batch (negative prompt first) where
    guidance_scale > 1, the guidance combination, scheduler.step; latents in, latents out."""
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import retrieve_timesteps

    do_classifier_free_guidance = guidance_scale > 1
    prompt_embeds, pooled_prompt_embeds = tensors["prompt_embeds"][labels], tensors["pooled_prompt_embeds"][labels]
    if do_classifier_free_guidance:
        prompt_embeds = torch.cat([tensors["negative_prompt_embeds"].expand(len(labels), -1, -1), prompt_embeds])
        pooled_prompt_embeds = torch.cat([tensors["negative_pooled_prompt_embeds"].expand(len(labels), -1),
                                          pooled_prompt_embeds])
    assert not pipe.scheduler.config.get("use_dynamic_shifting", None)
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", sigmas=None)
    for t in timesteps:
        latent_model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
        timestep = t.expand(latent_model_input.shape[0])
        noise_pred = pipe.transformer(hidden_states=latent_model_input, timestep=timestep,
                                      encoder_hidden_states=prompt_embeds, pooled_projections=pooled_prompt_embeds,
                                      return_dict=False)[0]
        if do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    return latents


SOLVERS = [("euler", {}), ("flow-dpm", {}), ("flow-unipc", {}), ("flow-unipc", {"variant": "bh1", "order": 3}),
           ("ba", "checkpoint")]


def scheduler_and_solver(setup, name, params):
    """The scheduler for ``pipe`` and the same solver for ``sample``, ba's with the setup's SideNet checkpoint."""
    if params == "checkpoint":
        scheduler = SolverbenchScheduler(name, nfe=STEPS, checkpoint=setup["checkpoint"], pipeline=setup["pipe"])
        return scheduler, sb.get_solver(name, checkpoint=str(setup["checkpoint"]))
    return SolverbenchScheduler(name, nfe=STEPS, pipeline=setup["pipe"], **params), sb.get_solver(name, **params)


@pytest.mark.parametrize("name, params", SOLVERS)
def test_the_scheduler_in_sd3s_loop_gives_samples_latents(sd3_setup, name, params):
    """In SD3's loop (guidance 4.5; ba without guidance, which it takes only without) the scheduler gives
    ``sample``'s latents on the diffusers backbone, SD3's time grid (shift 3) walked."""
    pipe, backbone = sd3_setup["pipe"], sd3_setup["backbone"]
    latents, labels = noise_and_labels((4, 8, 8), seed=11)
    scale = 1.0 if name == "ba" else 4.5
    pipe.scheduler, solver = scheduler_and_solver(sd3_setup, name, params)
    with torch.no_grad():
        theirs = sd3_loop(pipe, latents, sd3_setup["tensors"], labels, scale, STEPS)
    grid = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    grid.set_timesteps(STEPS)
    torch.testing.assert_close(pipe.scheduler.sigmas, grid.sigmas, rtol=0, atol=0)
    torch.testing.assert_close(pipe.scheduler.timesteps, grid.timesteps, rtol=0, atol=0)
    if name == "ba":
        solver.prepare(backbone)
    ours = sb.sample(backbone, solver, latents, labels, nfe=STEPS, time_grid=pipe.scheduler.sigmas, cfg_scale=scale)
    torch.testing.assert_close(theirs, ours.samples, rtol=0, atol=2e-6)
    assert (ours.samples - latents).abs().max() > 0.1
    result = pipe.scheduler.result
    assert result.nfe == STEPS and torch.equal(result.plan.times, ours.plan.times)
    if name == "ba":
        assert result.counters["sidenet_calls"] > 0


@pytest.mark.parametrize("name, params", SOLVERS)
def test_the_scheduler_in_fluxs_loop_gives_samples_latents(flux_setup, name, params):
    """In Flux's loop (packed latents, its sigmas and dynamic shift mu, the distilled guidance; true CFG 2.5 but for
    ba) the scheduler gives ``sample``'s latents on the diffusers backbone."""
    pipe, backbone = flux_setup["pipe"], flux_setup["backbone"]
    latents, labels = noise_and_labels((4, 8, 8), seed=12)
    true_cfg = 1.0 if name == "ba" else 2.5
    pipe.scheduler, solver = scheduler_and_solver(flux_setup, name, params)
    with torch.no_grad():
        theirs, _ = flux_pipeline_loop(pipe.transformer, pipe.scheduler, latents, flux_setup["tensors"], labels, 3.5,
                                       true_cfg, STEPS)
    if name == "ba":
        solver.prepare(backbone)
    ours = sb.sample(backbone, solver, latents, labels, nfe=STEPS, time_grid=pipe.scheduler.sigmas, cfg_scale=true_cfg)
    torch.testing.assert_close(theirs, ours.samples, rtol=0, atol=2e-5)
    assert (ours.samples - latents).abs().max() > 0.1
    assert pipe.scheduler.result.nfe == STEPS


def test_ba_in_a_guided_loop_is_refused_in_one_line(sd3_setup):
    pipe = sd3_setup["pipe"]
    latents, labels = noise_and_labels((4, 8, 8))
    pipe.scheduler = SolverbenchScheduler("ba", checkpoint=sd3_setup["checkpoint"], pipeline=pipe)
    with pytest.raises(PipelineError) as refused, torch.no_grad():
        sd3_loop(pipe, latents, sd3_setup["tensors"], labels, 3.0, STEPS)
    message = str(refused.value)
    assert "\n" not in message and "without classifier-free guidance" in message and "8 rows for 4 latents" in message
    assert "generate(pipe, prompts, solver='ba'" in message


def test_sd3s_own_call_with_the_scheduler_gives_generates_latents_and_images(sd3_setup):
    """StableDiffusion3Pipeline.__call__ unchanged, its scheduler SolverbenchScheduler: the latents and images of
    ``generate`` with the same prompts, seed, solver, NFE and guidance (the pipeline's default grid)."""
    pipe = sd3_setup["pipe"]
    original = pipe.scheduler
    call = dict(num_inference_steps=STEPS, guidance_scale=3.0, max_sequence_length=5)
    try:
        pipe.scheduler = SolverbenchScheduler("flow-dpm", nfe=STEPS, pipeline=pipe)
        assert pipe.scheduler.config.shift == 3.0  # the pipeline's scheduler's
        with torch.no_grad():
            theirs = pipe(PROMPTS[:2], generator=torch.Generator().manual_seed(7), output_type="latent", **call)[0]
            images = pipe(PROMPTS[:2], generator=torch.Generator().manual_seed(7), output_type="np", **call)[0]
        assert pipe.scheduler.result.nfe == STEPS
        ours = generate(pipe, PROMPTS[:2], "flow-dpm", STEPS, guidance_scale=3.0, seed=7, max_sequence_length=5,
                        output_type="latent", progress=False)
        torch.testing.assert_close(ours.latents, theirs, rtol=0, atol=1e-5)
        assert ours.nfe == STEPS and len(ours.times) == STEPS + 1 and ours.times[0] == 1 and ours.times[-1] == 0
        torch.testing.assert_close(ours.times, pipe.scheduler.plan.times, rtol=0, atol=0)
        pictures = generate(pipe, PROMPTS[:2], "flow-dpm", STEPS, guidance_scale=3.0, seed=7, max_sequence_length=5,
                            output_type="np", progress=False)
        assert pictures.images.shape == (2, 16, 16, 3) and pictures.nfe == STEPS
        np.testing.assert_allclose(pictures.images, images, rtol=0, atol=1e-5)
        pil = generate(pipe, PROMPTS[0], "heun", 4, guidance_scale=3.0, max_sequence_length=5,
                       num_images_per_prompt=2, progress=False)
        assert len(pil.images) == 2 and pil.images[0].size == (16, 16) and pil.nfe == 4 and len(pil.times) == 3
    finally:
        pipe.scheduler = original


def test_flux_and_sanas_own_calls_with_the_scheduler_give_generates_latents(flux_and_sana_pipelines):
    """FluxPipeline (packed latents, its sigmas, mu and distilled guidance) and SanaPipeline (its flow_shift, CFG 4.5)
    with SolverbenchScheduler give ``generate``'s latents (Flux's unpacked)."""
    _, pipes = flux_and_sana_pipelines
    flux_pipe, sana_pipe = pipes["flux"], pipes["sana"]
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    try:
        flux_pipe.scheduler = SolverbenchScheduler("flow-unipc", pipeline=flux_pipe)
        with torch.no_grad():
            packed = flux_pipe(PROMPTS[:2], num_inference_steps=STEPS, height=64, width=64, max_sequence_length=5,
                               generator=torch.Generator().manual_seed(3), output_type="latent")[0]
        ours = generate(flux_pipe, PROMPTS[:2], "flow-unipc", STEPS, height=64, width=64, max_sequence_length=5,
                        seed=3, output_type="latent", progress=False)
        torch.testing.assert_close(ours.latents, unpack(packed, 8, 8), rtol=0, atol=1e-5)
        assert ours.latents.shape == (2, 4, 8, 8) and ours.nfe == STEPS

        sana_pipe.scheduler = SolverbenchScheduler("euler", pipeline=sana_pipe)
        assert sana_pipe.scheduler.config.shift == 3.0  # its DPM-Solver++'s flow_shift
        with torch.no_grad():
            theirs = sana_pipe(PROMPTS[:2], num_inference_steps=STEPS, height=256, width=256, max_sequence_length=5,
                               use_resolution_binning=False, generator=torch.Generator().manual_seed(4),
                               output_type="latent")[0]
        ours = generate(sana_pipe, PROMPTS[:2], "euler", STEPS, height=256, width=256, max_sequence_length=5, seed=4,
                        output_type="latent", progress=False)
        torch.testing.assert_close(ours.latents, theirs, rtol=0, atol=1e-5)
    finally:
        flux_pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER)
        sana_pipe.scheduler = diffusers.DPMSolverMultistepScheduler(flow_shift=3.0)


def test_generate_with_ba_and_guidance_is_sample_on_the_encoded_prompts_backbone(sd3_setup):
    """``generate(solver="ba", checkpoint=..., guidance_scale=3)``: the pipeline's encoding, BA with its SideNet on
    both halves of the guidance, is ``sample`` on the backbone of the prompt set encode-prompts makes."""
    pipe, root = sd3_setup["pipe"], sd3_setup["root"]
    (root / "two.txt").write_text("\n".join(PROMPTS[:2]))
    prompt_set = root / "two.safetensors"
    encode_prompts(sd3_setup["folder"], root / "two.txt", prompt_set, max_sequence_length=5, progress=False)
    backbone = DiffusersFlowBackbone(model=sd3_setup["folder"], prompts=prompt_set)
    noise, _ = noise_and_labels((4, 8, 8), batch=2, seed=9)
    ours = generate(pipe, PROMPTS[:2], "ba", STEPS, checkpoint=sd3_setup["checkpoint"], guidance_scale=3.0,
                    latents=noise, max_sequence_length=5, output_type="latent", progress=False)
    solver = sb.get_solver("ba", checkpoint=str(sd3_setup["checkpoint"]))
    solver.prepare(backbone)
    theirs = sb.sample(backbone, solver, noise, torch.tensor([0, 1]), nfe=STEPS, time_grid=ours.times, cfg_scale=3.0)
    torch.testing.assert_close(ours.latents, theirs.samples, rtol=0, atol=1e-5)
    assert ours.nfe == STEPS and ours.counters["sidenet_calls"] > 0
    off = generate(pipe, PROMPTS[:2], "ba", STEPS, sidenet="off", guidance_scale=3.0, latents=noise,
                   max_sequence_length=5, output_type="latent", progress=False)
    assert (off.latents - ours.latents).abs().max() > 1e-4  # the SideNet changed something
    shifted = generate(pipe, PROMPTS[:2], "euler", STEPS, schedule={"name": "shifted", "shift": 2.0}, latents=noise,
                       max_sequence_length=5, output_type="latent", progress=False)
    torch.testing.assert_close(shifted.times, sb.make_time_grid({"name": "shifted", "shift": 2.0}, STEPS))


class Encoding:
    """A pipeline whose encode_prompt counts its calls: a refusal must come before any."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, 0

    def __enter__(self):
        original = self.pipe.encode_prompt

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        self.pipe.encode_prompt = counted
        return self

    def __exit__(self, *exc):
        del self.pipe.encode_prompt


def test_generate_refuses_in_one_line_before_any_work(sd3_setup, flux_setup, tmp_path):
    pipe = sd3_setup["pipe"]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases = [
        (dict(solver="nope"), "unknown solver 'nope'. Known solvers: ba, "),
        (dict(solver="euler", nfe=0), "an NFE budget must be at least 1, got 0"),
        (dict(solver="ba"), "ba with its SideNet on needs checkpoint=FILE"),
        (dict(solver="ba", checkpoint=tmp_path / "none.pt"), "none.pt': no such file"),
        (dict(solver="ba", checkpoint=tmp_path / "junk.pt"), "junk.pt"),
        (dict(solver="ba", checkpoint=flux_setup["checkpoint"]), "trained for another backbone; it differs in .*model: "
                                                                 "'flux' != 'sd3'"),
        (dict(solver="ba", checkpoint=sd3_setup["checkpoint"], height=32, width=32), "resolution: 16 != 32"),
        (dict(solver="euler", checkpoint=sd3_setup["checkpoint"]), "the solver 'euler' takes none"),
        (dict(solver="euler", output_type="jpeg"), "output_type must be one of pil, np, pt, latent"),
        (dict(solver="euler", seed=-1), "seed must be a whole number >= 0, got -1"),
        (dict(solver="euler", height=18), "height must be a whole multiple of 4 px"),
        (dict(solver="euler", guidance_scale=1.0, negative_prompt="blurry"), "guides nothing"),
        (dict(solver="euler", true_cfg_scale=2.0), "true_cfg_scale is FluxPipeline's"),
        (dict(solver="euler", schedule="nope"), "unknown schedule 'nope'"),
        (dict(solver="euler", time_grid=[1.0, 0.5, 0.0]), "euler spends a budget of 4 NFE on 4 interval.*grid given "
                                                           "with it has 2"),
    ]
    with Encoding(pipe) as encoding:
        for arguments, message in cases:
            with pytest.raises(PipelineError, match=message) as refused:
                generate(pipe, PROMPTS[:2], **{"nfe": STEPS, **arguments}, progress=False)
            assert "\n" not in str(refused.value), str(refused.value)
        with pytest.raises(PipelineError, match="a DiffusersFlowBackbone is not a pipeline solverbench runs: it runs "
                                                "StableDiffusion3Pipeline, FluxPipeline, SanaPipeline"):
            generate(sd3_setup["backbone"], PROMPTS[:2], "euler", STEPS)
        with pytest.raises(PipelineError, match="true_cfg_scale=2.0 guides away from a negative prompt"):
            generate(flux_setup["pipe"], PROMPTS[:2], "euler", STEPS, true_cfg_scale=2.0, output_type="latent")
        with pytest.raises(PipelineError, match="decodes with the pipeline's VAE, and this FluxPipeline has none"):
            generate(flux_setup["pipe"], PROMPTS[:2], "euler", STEPS)
        assert encoding.calls == 0


def test_the_scheduler_refuses_in_one_line(sd3_setup):
    pipe = sd3_setup["pipe"]
    for solver, message in [("heun", "heun spends 2 evaluations per step: generate"),
                            ("rk4", "rk4 spends 4 evaluations per step: generate\\(pipe, prompts, solver='rk4'"),
                            ("ba-single", "ba-single is not one of them")]:
        with pytest.raises(PipelineError, match="runs the solvers that evaluate once per step, at the step's time: "
                                                "euler, flow-dpm, flow-unipc, ba; " + message):
            SolverbenchScheduler(solver, sidenet="off") if solver == "ba-single" else SolverbenchScheduler(solver)
    with pytest.raises(PipelineError, match="ba is prepared for the pipeline's transformer .* give pipeline=pipe"):
        SolverbenchScheduler("ba", sidenet="off")
    with pytest.raises(PipelineError, match="ba with its SideNet on needs checkpoint=FILE"):
        SolverbenchScheduler("ba", pipeline=pipe)
    scheduler = SolverbenchScheduler("euler", nfe=STEPS)
    with pytest.raises(PipelineError, match=r"SolverbenchScheduler\(nfe=4\) was asked for 28 steps: call the pipeline "
                                            "with num_inference_steps=4"):
        scheduler.set_timesteps(28)
    fixed = SolverbenchScheduler("euler", time_grid=[1.0, 0.5, 0.0])
    with pytest.raises(PipelineError, match="the scheduler's time_grid has 2 steps, the pipeline asked for 28: call "
                                            "the pipeline with num_inference_steps=2"):
        fixed.set_timesteps(28)
    with pytest.raises(PipelineError, match="spends a budget of 4 NFE on 4 interval"):
        SolverbenchScheduler("euler", nfe=4, time_grid=[1.0, 0.5, 0.0])
    with pytest.raises(PipelineError, match="a begin index of 3"):
        scheduler.set_begin_index(3)
    scheduler.set_timesteps(STEPS)
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(PipelineError, match="step 0 was given timestep 500, the scheduler's step 0 is at 1000"):
        scheduler.step(torch.zeros_like(x), 500.0, x)
    scheduler.set_timesteps(STEPS)
    first = scheduler.step(torch.zeros_like(x), scheduler.timesteps[0], x).prev_sample
    with pytest.raises(PipelineError, match="not those the previous step returned"):
        scheduler.step(torch.zeros_like(x), scheduler.timesteps[1], first + 1)
