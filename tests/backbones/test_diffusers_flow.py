"""The ``diffusers`` backbone on tiny random transformers built from configs (SD3, Flux, Sana), prompt sets written
here: each model's timestep convention, latents and conditions; parity of solverbench's ``diffusers`` solver with
the pipelines' denoising loops (written here from StableDiffusion3Pipeline's and FluxPipeline's source);
``encode-prompts`` with tiny text encoders and tokenizers; VAE decoding; the one-line refusals."""
import json

import numpy as np
import pytest
import torch
import yaml

import solverbench as sb
from backbones.diffusers_flow.architectures.flux import dynamic_shift, image_ids, pack, unpack
from backbones.diffusers_flow.backbone import DiffusersFlowBackbone
from backbones.diffusers_flow.prompt_set import PromptSetError, read_prompt_set, write_prompt_set
from solverbench.backbone import backbone_in_dtype
from solverbench.grid import load_grid
from solvers.diffusers_schedulers import DiffusersScheduler

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PROMPTS = ["a red cat", "a blue dog", "a photo of a cat"]
TOKENS = 5
SD3_CONFIG = dict(sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
                  joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4)
FLUX_CONFIG = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                   num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8, axes_dims_rope=(4, 6, 6),
                   guidance_embeds=True)
SANA_CONFIG = dict(in_channels=4, out_channels=8, num_attention_heads=2, attention_head_dim=8, num_layers=1,
                   num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=16,
                   sample_size=8, patch_size=1, timestep_scale=1.0)
VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  layers_per_block=1, norm_num_groups=4, sample_size=16, scaling_factor=1.5, shift_factor=0.1)


def embeddings(seed: int, **widths) -> dict:
    """Random conditions for the prompts and the negative prompt: (P, L, D) embeddings, (P, D') pooled ones."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in widths.items():
        tensors[name] = torch.randn(len(PROMPTS), *shape, generator=g)
        tensors["negative_" + name] = torch.randn(1, *shape, generator=g)
    return tensors


def save_model(model, folder):
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    """A pipeline folder with a tiny SD3 transformer and a tiny VAE, a prompt set for it, and the transformer."""
    root = tmp_path_factory.mktemp("sd3")
    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(**SD3_CONFIG).eval()
    save_model(transformer, root / "pipe" / "transformer")
    save_model(diffusers.AutoencoderKL(**VAE_CONFIG), root / "pipe" / "vae")
    tensors = embeddings(1, prompt_embeds=(TOKENS, 16), pooled_prompt_embeds=(8,))
    prompts = write_prompt_set(root / "prompts.safetensors", PROMPTS, tensors, negative_prompt="")
    return {"model": root / "pipe", "prompts": prompts, "transformer": transformer, "tensors": tensors, "root": root}


@pytest.fixture(scope="module")
def sd3_backbone(sd3):
    return DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"])


def noise_and_labels(shape, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g), torch.tensor([0, 1, 2, 0])[:batch]


# -- SD3 ---------------------------------------------------------------------------------------------------------

def test_sd3_latents_labels_and_null_label(sd3, sd3_backbone):
    b = sd3_backbone
    assert b.sample_shape == (4, 8, 8)  # in_channels; the pipeline's default sample_size
    assert (b.num_classes, b.null_label) == (3, 3)  # the prompts, then the negative prompt
    assert b.identity()["model"] == "sd3" and b.identity()["resolution"] == 16  # the tiny VAE downsamples by 2
    assert b.prompts == tuple(PROMPTS)
    larger = DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], resolution=32)
    assert larger.sample_shape == (4, 16, 16) and larger.identity()["resolution"] == 32
    x, y = noise_and_labels((4, 16, 16))
    assert larger(x, torch.full((4,), 0.5), y).shape == x.shape


def test_sd3_velocity_is_the_transformer_at_timestep_1000_t(sd3, sd3_backbone):
    """StableDiffusion3Pipeline feeds the transformer timestep = sigma x 1000; its output is the velocity."""
    x, y = noise_and_labels((4, 8, 8))
    t = torch.tensor([1.0, 0.7, 0.3, 0.05])
    tensors = sd3["tensors"]
    with torch.no_grad():
        expected = sd3["transformer"](hidden_states=x, timestep=t * 1000,
                                      encoder_hidden_states=tensors["prompt_embeds"][y],
                                      pooled_projections=tensors["pooled_prompt_embeds"][y], return_dict=False)[0]
        torch.testing.assert_close(sd3_backbone(x, t, y), expected, rtol=0, atol=0)
        null = sd3["transformer"](hidden_states=x, timestep=t * 1000,
                                  encoder_hidden_states=tensors["negative_prompt_embeds"].expand(4, -1, -1),
                                  pooled_projections=tensors["negative_pooled_prompt_embeds"].expand(4, -1),
                                  return_dict=False)[0]
        torch.testing.assert_close(sd3_backbone(x, t, None), null, rtol=0, atol=0)
        torch.testing.assert_close(sd3_backbone(x, t, torch.full((4,), 3)), null, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"prompt indices in \[0, 3\] \(the null label 3: the negative prompt\)"):
        sd3_backbone(x, t, torch.tensor([0, 1, 2, 4]))


def sd3_pipeline_loop(transformer, scheduler, latents, tensors, labels, guidance_scale, steps):
    """StableDiffusion3Pipeline.__call__'s denoising loop (step 7), as its source runs it: negative prompt first in
    the doubled batch, timestep = the scheduler's (sigma x 1000), CFG, scheduler.step; latents in, latents out."""
    prompt_embeds = torch.cat([tensors["negative_prompt_embeds"].expand(len(labels), -1, -1),
                               tensors["prompt_embeds"][labels]])
    pooled_prompt_embeds = torch.cat([tensors["negative_pooled_prompt_embeds"].expand(len(labels), -1),
                                      tensors["pooled_prompt_embeds"][labels]])
    scheduler.set_timesteps(steps, device="cpu")  # retrieve_timesteps(scheduler, steps, device, sigmas=None)
    for t in scheduler.timesteps:
        latent_model_input = torch.cat([latents] * 2)
        timestep = t.expand(latent_model_input.shape[0])
        noise_pred = transformer(hidden_states=latent_model_input, timestep=timestep,
                                 encoder_hidden_states=prompt_embeds, pooled_projections=pooled_prompt_embeds,
                                 return_dict=False)[0]
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    return latents


@pytest.mark.parametrize("steps", [4, 7])
def test_sd3_parity_with_the_pipeline_loop(sd3, sd3_backbone, steps):
    """solverbench's diffusers(FlowMatchEulerDiscreteScheduler, shift=3) on the backbone is SD3's denoising loop."""
    latents, labels = noise_and_labels((4, 8, 8), seed=steps)
    with torch.no_grad():
        theirs = sd3_pipeline_loop(sd3["transformer"], diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), latents,
                                   sd3["tensors"], labels, guidance_scale=4.5, steps=steps)
    solver = DiffusersScheduler("FlowMatchEulerDiscreteScheduler", shift=3)
    ours = sb.sample(sd3_backbone, solver, latents, labels, nfe=steps, cfg_scale=4.5)
    assert ours.nfe == steps
    torch.testing.assert_close(ours.samples, theirs, rtol=0, atol=1e-6)
    assert (ours.samples - latents).abs().max() > 0.1  # it moved


def test_sd3_samples_with_every_kind_of_solver_and_guidance_interval(sd3_backbone):
    latents, labels = noise_and_labels((4, 8, 8))
    for solver in ("euler", "heun", "flow-unipc"):
        result = sb.sample(sd3_backbone, solver, latents, labels, nfe=4, cfg_scale=2.0, cfg_interval=(0.2, 0.8))
        assert result.samples.shape == latents.shape and torch.isfinite(result.samples).all()


def test_dtype_sets_the_weights_and_the_velocity_comes_back_in_the_latents_dtype(sd3, sd3_backbone):
    b = DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], dtype="float64")
    assert b.transformer.dtype == torch.float64 and b.identity()["dtype"] == "float64"
    x, y = noise_and_labels((4, 8, 8))
    t = torch.full((4,), 0.5, dtype=torch.float64)
    v = b(x.double(), t, y)
    assert v.dtype == torch.float64
    assert sb.sample(b, "euler", x.double(), y, nfe=2).samples.dtype == torch.float64
    copy = backbone_in_dtype(sd3_backbone, torch.float64)  # what a float64 grid and the reference solve use
    assert copy.condition_prompt_embeds.dtype == torch.float64 and copy.transformer.dtype == torch.float64
    torch.testing.assert_close(copy(x.double(), t, y), v, rtol=0, atol=1e-12)
    half = DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], dtype="bfloat16")
    assert half.transformer.dtype == torch.bfloat16
    assert half(x, t.float(), y).dtype == torch.float32  # computed in bfloat16, handed back in the latents' dtype
    torch.testing.assert_close(half(x, t.float(), y), v.float(), rtol=0, atol=0.1)
    with pytest.raises(ValueError, match="dtype must be one of float32, float64, bfloat16, float16"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], dtype="fp16")


# -- Flux --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    """A model folder with a tiny guidance-distilled Flux transformer, prompt sets with and without a negative."""
    root = tmp_path_factory.mktemp("flux")
    torch.manual_seed(1)
    transformer = diffusers.FluxTransformer2DModel(**FLUX_CONFIG).eval()
    save_model(transformer, root / "flux-transformer")
    tensors = embeddings(2, prompt_embeds=(TOKENS, 16), pooled_prompt_embeds=(8,))
    with_negative = write_prompt_set(root / "with-negative.safetensors", PROMPTS, tensors, negative_prompt="blurry")
    positive = {k: v for k, v in tensors.items() if not k.startswith("negative_")}
    without = write_prompt_set(root / "prompts.safetensors", PROMPTS, positive)
    return {"model": root / "flux-transformer", "prompts": with_negative, "positive": without,
            "transformer": transformer, "tensors": tensors}


@pytest.fixture(scope="module")
def flux_backbone(flux):
    return DiffusersFlowBackbone(model=flux["model"], prompts=flux["prompts"], resolution=64)  # no VAE: 8x, latents 8


def test_flux_latents_are_unpacked_and_its_pack_is_the_pipelines():
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    x = torch.randn(2, 4, 6, 8)
    packed = FluxPipeline._pack_latents(x, 2, 4, 6, 8)
    torch.testing.assert_close(pack(x), packed, rtol=0, atol=0)
    torch.testing.assert_close(unpack(packed, 6, 8), x, rtol=0, atol=0)
    torch.testing.assert_close(image_ids(3, 4, "cpu", torch.float32),
                               FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32), rtol=0, atol=0)


def test_flux_velocity_is_the_transformer_at_timestep_t_with_its_distilled_guidance(flux, flux_backbone):
    """FluxPipeline feeds the transformer timestep / 1000 = sigma and guidance = guidance_scale (3.5 by default)."""
    b = flux_backbone
    assert b.sample_shape == (4, 8, 8) and (b.num_classes, b.null_label) == (3, 3)
    assert b.guidance == 3.5 and b.identity()["guidance"] == 3.5
    x, y = noise_and_labels((4, 8, 8))
    t = torch.tensor([1.0, 0.6, 0.25, 0.01])
    tensors = flux["tensors"]
    with torch.no_grad():
        out = flux["transformer"](hidden_states=pack(x), timestep=t, guidance=torch.full((4,), 3.5),
                                  pooled_projections=tensors["pooled_prompt_embeds"][y],
                                  encoder_hidden_states=tensors["prompt_embeds"][y], txt_ids=torch.zeros(TOKENS, 3),
                                  img_ids=image_ids(4, 4, "cpu", torch.float32), return_dict=False)[0]
        torch.testing.assert_close(b(x, t, y), unpack(out, 8, 8), rtol=0, atol=0)
        stronger = DiffusersFlowBackbone(model=flux["model"], prompts=flux["prompts"], resolution=64, guidance=5.0)
        assert not torch.allclose(stronger(x, t, y), b(x, t, y))


def flux_pipeline_loop(transformer, scheduler, latents, tensors, labels, guidance_scale, true_cfg_scale, steps):
    """FluxPipeline.__call__'s steps 4-6 as its source runs them: packed latents and their ids, sigmas
    linspace(1, 1/N, N) shifted by mu = calculate_shift(image_seq_len), the distilled guidance, true CFG with the
    negative prompt as a second call; latents (B, C, H, W) in, out."""
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline, calculate_shift, retrieve_timesteps

    batch, channels, height, width = latents.shape
    latents = FluxPipeline._pack_latents(latents, batch, channels, height, width)
    latent_image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, "cpu", latents.dtype)
    prompt_embeds, pooled_prompt_embeds = tensors["prompt_embeds"][labels], tensors["pooled_prompt_embeds"][labels]
    negative_prompt_embeds = tensors["negative_prompt_embeds"].expand(batch, -1, -1)
    negative_pooled_prompt_embeds = tensors["negative_pooled_prompt_embeds"].expand(batch, -1)
    text_ids = torch.zeros(prompt_embeds.shape[1], 3)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    mu = calculate_shift(latents.shape[1], scheduler.config.get("base_image_seq_len", 256),
                         scheduler.config.get("max_image_seq_len", 4096), scheduler.config.get("base_shift", 0.5),
                         scheduler.config.get("max_shift", 1.15))
    timesteps, _ = retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas, mu=mu)
    guidance = torch.full([1], guidance_scale, dtype=torch.float32).expand(latents.shape[0])
    scheduler.set_begin_index(0)
    for t in timesteps:
        timestep = t.expand(latents.shape[0]).to(latents.dtype)
        noise_pred = transformer(hidden_states=latents, timestep=timestep / 1000, guidance=guidance,
                                 pooled_projections=pooled_prompt_embeds, encoder_hidden_states=prompt_embeds,
                                 txt_ids=text_ids, img_ids=latent_image_ids, return_dict=False)[0]
        if true_cfg_scale > 1:
            neg_noise_pred = transformer(hidden_states=latents, timestep=timestep / 1000, guidance=guidance,
                                         pooled_projections=negative_pooled_prompt_embeds,
                                         encoder_hidden_states=negative_prompt_embeds, txt_ids=text_ids,
                                         img_ids=latent_image_ids, return_dict=False)[0]
            noise_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    return FluxPipeline._unpack_latents(latents, height * 8, width * 8, 8), mu


FLUX_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
                      use_dynamic_shifting=True)  # FLUX.1-dev's scheduler config


@pytest.mark.parametrize("true_cfg_scale", [1.0, 2.5])
def test_flux_parity_with_the_pipeline_loop(flux, flux_backbone, true_cfg_scale):
    """solverbench's diffusers(FlowMatchEuler with Flux's dynamic shift, mu, grid=plan) on the backbone is Flux's loop:
    the uniform plan's times are FluxPipeline's sigmas linspace(1, 1/N, N), shifted by the same mu."""
    steps = 5
    latents, labels = noise_and_labels((4, 8, 8), seed=3)
    with torch.no_grad():
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER)
        theirs, mu = flux_pipeline_loop(flux["transformer"], scheduler, latents, flux["tensors"], labels, 3.5,
                                        true_cfg_scale, steps)
    assert mu == dynamic_shift(8)
    solver = DiffusersScheduler("FlowMatchEulerDiscreteScheduler", **FLUX_SCHEDULER, mu=mu, grid="plan")
    ours = sb.sample(flux_backbone, solver, latents, labels, nfe=steps, cfg_scale=true_cfg_scale)
    torch.testing.assert_close(ours.samples, theirs, rtol=0, atol=1e-6)
    assert (ours.samples - latents).abs().max() > 0.1


def test_flux_without_a_negative_prompt_has_no_null_label(flux):
    b = DiffusersFlowBackbone(model=flux["model"], prompts=flux["positive"], resolution=64)
    assert (b.num_classes, b.null_label) == (3, None)
    x, y = noise_and_labels((4, 8, 8))
    assert b(x, torch.full((4,), 0.5), y).shape == x.shape
    with pytest.raises(ValueError, match="no negative prompt, so there is no null label"):
        b(x, torch.full((4,), 0.5), None)
    with pytest.raises(ValueError, match="cannot do classifier-free guidance"):
        sb.sample(b, "euler", x, y, nfe=2, cfg_scale=2.0)


def test_guidance_belongs_to_guidance_distilled_flux_only(sd3, flux, tmp_path):
    with pytest.raises(ValueError, match="SD3Transformer2DModel, which has none: guide it with classifier-free"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], guidance=3.5)
    save_model(diffusers.FluxTransformer2DModel(**{**FLUX_CONFIG, "guidance_embeds": False}), tmp_path / "schnell")
    schnell = DiffusersFlowBackbone(model=tmp_path / "schnell", prompts=flux["prompts"], resolution=64)
    assert schnell.guidance is None and "guidance" not in schnell.identity()
    with pytest.raises(ValueError, match="not guidance-distilled"):
        DiffusersFlowBackbone(model=tmp_path / "schnell", prompts=flux["prompts"], resolution=64, guidance=3.5)
    with pytest.raises(ValueError, match="guidance must be a number"):
        DiffusersFlowBackbone(model=flux["model"], prompts=flux["prompts"], resolution=64, guidance="high")


# -- Sana --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sana(tmp_path_factory):
    """A tiny Sana transformer with a learned-variance head, and a prompt set with attention masks."""
    root = tmp_path_factory.mktemp("sana")
    torch.manual_seed(2)
    transformer = diffusers.SanaTransformer2DModel(**SANA_CONFIG).eval()
    save_model(transformer, root / "pipe" / "transformer")
    tensors = embeddings(3, prompt_embeds=(TOKENS, 16))
    tensors["prompt_attention_mask"] = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    tensors["negative_prompt_attention_mask"] = torch.tensor([[1, 0, 0, 0, 0]])
    prompts = write_prompt_set(root / "prompts.safetensors", PROMPTS, tensors, negative_prompt="")
    return {"model": root / "pipe", "prompts": prompts, "transformer": transformer, "tensors": tensors}


def test_sana_velocity_is_the_transformer_at_timestep_1000_t_its_first_channels(sana):
    """SanaPipeline: timestep = 1000 sigma x timestep_scale, the prompt's attention mask, the learned-variance head's
    first half (out_channels = 2 in_channels)."""
    b = DiffusersFlowBackbone(model=sana["model"], prompts=sana["prompts"], resolution=256)  # no VAE: Sana's 32x
    assert b.sample_shape == (4, 8, 8) and (b.num_classes, b.null_label) == (3, 3)
    x, y = noise_and_labels((4, 8, 8))
    t = torch.tensor([0.9, 0.5, 0.2, 0.1])
    tensors = sana["tensors"]
    with torch.no_grad():
        out = sana["transformer"](x, encoder_hidden_states=tensors["prompt_embeds"][y],
                                  encoder_attention_mask=tensors["prompt_attention_mask"][y], timestep=t * 1000,
                                  return_dict=False)[0]
        torch.testing.assert_close(b(x, t, y), out[:, :4], rtol=0, atol=0)
        null = sana["transformer"](x, encoder_hidden_states=tensors["negative_prompt_embeds"].expand(4, -1, -1),
                                   encoder_attention_mask=tensors["negative_prompt_attention_mask"].expand(4, -1),
                                   timestep=t * 1000, return_dict=False)[0]
        torch.testing.assert_close(b(x, t, None), null[:, :4], rtol=0, atol=0)
    result = sb.sample(b, DiffusersScheduler("DPMSolverMultistepScheduler", flow_shift=3.0), x, y, nfe=4,
                       cfg_scale=4.5)
    assert torch.isfinite(result.samples).all()


# -- prompt sets and folders: one-line refusals --------------------------------------------------------------------

def test_a_prompt_set_keeps_its_texts_and_tensors(sd3):
    prompt_set = read_prompt_set(sd3["prompts"])
    assert prompt_set.prompts == tuple(PROMPTS) and prompt_set.negative_prompt == ""
    assert set(prompt_set.tensors) == set(sd3["tensors"]) and prompt_set.size == 3
    for name, tensor in sd3["tensors"].items():
        torch.testing.assert_close(prompt_set.tensors[name], tensor, rtol=0, atol=0)


@pytest.mark.parametrize("change, message", [
    (lambda t: {**t, "prompt_embeds": torch.randn(3, TOKENS, 32), "negative_prompt_embeds": torch.randn(1, TOKENS, 32)},
     r"prompt_embeds has width 32, but the SD3Transformer2DModel in '.*transformer' takes 16 \(joint_attention_dim of "
     r"its config\)"),
    (lambda t: {**t, "pooled_prompt_embeds": torch.randn(3, 4), "negative_pooled_prompt_embeds": torch.randn(1, 4)},
     r"pooled_prompt_embeds has width 4, but .* takes 8 \(pooled_projection_dim"),
    (lambda t: {k: v for k, v in t.items() if "pooled" not in k},
     "lacks pooled_prompt_embeds, negative_pooled_prompt_embeds: a SD3Transformer2DModel takes prompt_embeds, "
     "pooled_prompt_embeds and the negative prompt's"),
    (lambda t: {k: v for k, v in t.items() if not k.startswith("negative_")},
     "lacks negative_prompt_embeds, negative_pooled_prompt_embeds"),
    (lambda t: {**t, "prompt_embeds": torch.randn(3, 7, 16), "negative_prompt_embeds": torch.randn(1, 7, 16),
                "extra": torch.randn(3, 2)}, None),  # other token counts and extra tensors are fine
])
def test_a_prompt_set_that_does_not_fit_the_transformer_is_refused(sd3, tmp_path, change, message):
    tensors = change(dict(sd3["tensors"]))
    negative = "" if any(k.startswith("negative_") for k in tensors) else None
    path = write_prompt_set(tmp_path / "set.safetensors", PROMPTS, tensors, negative_prompt=negative)
    if message is None:
        assert DiffusersFlowBackbone(model=sd3["model"], prompts=path).num_classes == 3
        return
    with pytest.raises(PromptSetError, match=f"prompt set '{tmp_path}/set.safetensors'.*{message}"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=path)


def test_a_prompt_set_file_that_is_not_one_is_refused(sd3, tmp_path):
    from safetensors.torch import save_file

    def refused(path, message):
        with pytest.raises(PromptSetError, match=message) as err:
            read_prompt_set(path)
        assert "\n" not in str(err.value)

    refused(tmp_path / "none.safetensors", "none.safetensors': no such file")
    refused(tmp_path, "a folder")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    refused(tmp_path / "junk.safetensors", "junk.safetensors' is not a readable safetensors file")
    save_file(dict(sd3["tensors"]), str(tmp_path / "bare.safetensors"))
    refused(tmp_path / "bare.safetensors", "has no 'prompts' in its metadata")
    save_file(dict(sd3["tensors"]), str(tmp_path / "two.safetensors"), metadata={"prompts": json.dumps(PROMPTS[:2])})
    refused(tmp_path / "two.safetensors", r"prompt_embeds has shape \(3, .*\), but its metadata names 2 prompts: give "
                                         r"one row per prompt \(2, ...\)")
    with pytest.raises(PromptSetError, match=r"negative_prompt_embeds has shape \(2, 5, 16\); the negative prompt's "
                                             r"is one row shaped as the prompts' rows, \(1, 5, 16\)"):
        write_prompt_set(tmp_path / "x.safetensors", PROMPTS, {**sd3["tensors"],
                                                               "negative_prompt_embeds": torch.randn(2, TOKENS, 16)})
    tokens = {**sd3["tensors"], "negative_prompt_embeds": torch.randn(1, TOKENS, 16)}
    tokens["prompt_embeds"] = torch.randn(3, TOKENS + 1, 16)
    with pytest.raises(PromptSetError, match="shaped as the prompts' rows"):
        write_prompt_set(tmp_path / "x.safetensors", PROMPTS, tokens, negative_prompt="")


def test_a_folder_without_a_transformer_it_runs_is_refused(sd3, tmp_path):
    def refused(model, message):
        with pytest.raises(ValueError, match=message) as err:
            DiffusersFlowBackbone(model=model, prompts=sd3["prompts"])
        assert "\n" not in str(err.value)

    refused(tmp_path / "missing", "model folder '.*missing' does not exist; give a local pipeline folder")
    refused(tmp_path, "holds no transformer: neither transformer/config.json .* nor config.json")
    refused(sd3["model"] / "vae", "vae' holds a model of class AutoencoderKL, not a flow-matching transformer the "
                                  "backbone runs: SD3Transformer2DModel, FluxTransformer2DModel, "
                                  "SanaTransformer2DModel")
    model_folder = DiffusersFlowBackbone(model=sd3["model"] / "transformer", prompts=sd3["prompts"])
    assert model_folder.vae is None and model_folder.sample_shape == (4, 8, 8)
    with pytest.raises(ValueError, match=r"resolution must be a whole multiple of 4 px \(VAE downsampling 2 x"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], resolution=18)
    with pytest.raises(ValueError, match="at most 96 patches a side"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], resolution=4 * 97)


# -- images ------------------------------------------------------------------------------------------------------

def test_to_images_decodes_as_the_pipeline_does(sd3, sd3_backbone):
    """latents / scaling_factor + shift_factor through the pipeline's VAE, then its image processor's uint8."""
    from diffusers.image_processor import VaeImageProcessor

    latents, _ = noise_and_labels((4, 8, 8), batch=2)
    images = sd3_backbone.to_images(latents)
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 16, 16)
    vae = diffusers.AutoencoderKL.from_pretrained(sd3["model"] / "vae")
    with torch.no_grad():
        decoded = vae.decode(latents / 1.5 + 0.1, return_dict=False)[0]
    expected = VaeImageProcessor(vae_scale_factor=2).postprocess(decoded, output_type="np")
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), (expected * 255).round().astype("uint8"))


def test_to_images_needs_a_vae_and_one_that_fits(sd3, flux_backbone, tmp_path):
    latents, _ = noise_and_labels((4, 8, 8), batch=1)
    with pytest.raises(ValueError, match="diffusers makes images only with a VAE: give model=PIPELINE_FOLDER"):
        flux_backbone.to_images(latents)
    save_model(diffusers.AutoencoderKL(**{**VAE_CONFIG, "latent_channels": 16}), tmp_path / "vae16")
    with pytest.raises(ValueError, match="vae16' makes 16-channel latents; the SD3Transformer2DModel .* takes 4"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], vae=tmp_path / "vae16")
    with pytest.raises(ValueError, match="transformer' holds a model of class SD3Transformer2DModel; the VAEs"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], vae=sd3["model"] / "transformer")


# -- grids ---------------------------------------------------------------------------------------------------------

def test_a_grid_runs_prompts_as_balanced_labels_with_guidance(sd3, tmp_path):
    """A sweep on the backbone: paths next to the grid file, labels: balanced over the prompts, CFG, the diffusers
    solver beside another, trajectory error against the float64 reference (a float64 copy of the transformer and
    the prompt set)."""
    from solverbench.engine import run_grid

    grid = {"name": "prompts", "backbones": [{"name": "diffusers", "params": {"model": "pipe",
                                                                            "prompts": "prompts.safetensors"}}],
            "solvers": [{"name": "diffusers", "params": {"scheduler": "FlowMatchEulerDiscreteScheduler", "shift": 3}},
                        "euler"],
            "nfe": [3], "num_samples": 3, "labels": "balanced", "metrics": ["trajectory_error"],
            "guidance": {"scale": 2.0}, "reference": {"rtol": 1e-5, "atol": 1e-5}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    (tmp_path / "pipe").symlink_to(sd3["model"])
    (tmp_path / "prompts.safetensors").symlink_to(sd3["prompts"])
    table = run_grid(load_grid(tmp_path / "grid.yaml"), tmp_path / "results", progress=False)
    rows = table.current()
    assert len(rows) == 2 and (rows["status"] == "ok").all() and (rows["trajectory_error"] > 0).all()


def test_a_grid_naming_a_prompt_set_that_does_not_fit_fails_while_read(sd3, tmp_path):
    from solverbench.grid import GridError

    wide = {**sd3["tensors"], "prompt_embeds": torch.randn(3, TOKENS, 32),
            "negative_prompt_embeds": torch.randn(1, TOKENS, 32)}
    path = write_prompt_set(tmp_path / "wide.safetensors", PROMPTS, wide, negative_prompt="")
    grid = {"backbones": [{"name": "diffusers", "params": {"model": str(sd3["model"]), "prompts": str(path)}}],
            "solvers": ["euler"], "nfe": [2], "num_samples": 2}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    with pytest.raises(GridError, match="diffusers refuses them: prompt set .* has width 32"):
        load_grid(tmp_path / "grid.yaml")


# -- encode-prompts ------------------------------------------------------------------------------------------------

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "a", "red", "blue", "cat", "dog", "photo", "of", "blurry"]


def tiny_tokenizer(max_length):
    """A word-level tokenizer of WORDS (no hub download): what the tiny text encoders read."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=max_length)


@pytest.fixture(scope="module")
def sd3_pipeline(sd3):
    """A whole SD3 pipeline folder: tiny CLIP, CLIP and T5 text encoders and their tokenizers, beside the tiny SD3
    transformer and VAE (its T5 as wide as the transformer's joint_attention_dim, its CLIPs' projections as its
    pooled_projection_dim)."""
    pytest.importorskip("transformers")
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(3)
    clip = dict(vocab_size=len(WORDS), hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, projection_dim=4, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    t5 = T5Config(vocab_size=len(WORDS), d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2, pad_token_id=0,
                  eos_token_id=3, decoder_start_token_id=0)
    pipe = diffusers.StableDiffusion3Pipeline(
        transformer=sd3["transformer"], vae=diffusers.AutoencoderKL.from_pretrained(sd3["model"] / "vae"),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**clip)).eval(), tokenizer=tiny_tokenizer(6),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**clip)).eval(), tokenizer_2=tiny_tokenizer(6),
        text_encoder_3=T5EncoderModel(t5).eval(), tokenizer_3=tiny_tokenizer(8))  # eval: T5's dropout off
    folder = sd3["root"] / "whole-pipeline"
    pipe.save_pretrained(folder)
    (sd3["root"] / "prompts.txt").write_text("a red cat\n\n  a blue dog  \na photo of a cat\n")
    return folder, pipe


def test_encode_prompts_writes_what_the_pipelines_encode_prompt_gives(sd3_pipeline, sd3, capsys):
    from solverbench.cli import main
    import backbones.diffusers_flow.command  # noqa: F401  (registers it where its entry point is not installed)

    folder, pipe = sd3_pipeline
    out = sd3["root"] / "encoded.safetensors"
    assert main(["encode-prompts", str(folder), str(sd3["root"] / "prompts.txt"), "--out", str(out),
                 "--max-sequence-length", "5", "--batch-size", "2", "--no-progress"]) == 0
    assert f"wrote {out}: 3 prompts and the negative prompt ''" in capsys.readouterr().out
    prompt_set = read_prompt_set(out)
    assert prompt_set.prompts == tuple(PROMPTS) and prompt_set.negative_prompt == ""
    assert prompt_set.metadata["pipeline"] == "StableDiffusion3Pipeline"
    with torch.no_grad():
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(PROMPTS, None, None, negative_prompt="",
                                                                       max_sequence_length=5, device="cpu")
    expected = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "negative_prompt_embeds": negative[:1],
                "negative_pooled_prompt_embeds": negative_pooled[:1]}
    assert prompt_set.tensors["prompt_embeds"].shape == (3, 6 + 5, 16)  # CLIP's 6 tokens then T5's 5
    for name, tensor in expected.items():
        torch.testing.assert_close(prompt_set.tensors[name], tensor, rtol=0, atol=1e-6)
    b = DiffusersFlowBackbone(model=folder, prompts=out)  # the pipeline folder is the backbone's model too
    latents, labels = noise_and_labels(b.sample_shape)
    assert torch.isfinite(sb.sample(b, "euler", latents, labels, nfe=2, cfg_scale=3.0).samples).all()


def test_encode_prompts_refuses_in_one_line(sd3_pipeline, sd3, tmp_path, capsys):
    from solverbench.cli import main
    import backbones.diffusers_flow.command  # noqa: F401

    folder, _ = sd3_pipeline
    prompts = sd3["root"] / "prompts.txt"
    (tmp_path / "empty.txt").write_text("\n   \n")
    (tmp_path / "dit").mkdir()
    (tmp_path / "dit" / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    cases = [
        ([str(tmp_path / "missing"), str(prompts)], "pipeline folder '.*missing' does not exist"),
        ([str(sd3["model"] / "transformer"), str(prompts)], "has no model_index.json: give a whole pipeline's folder"),
        ([str(folder), str(tmp_path / "empty.txt")], "empty.txt' holds no prompt"),
        ([str(folder), str(tmp_path / "none.txt")], "none.txt': no such file"),
        ([str(tmp_path / "dit"), str(prompts)], "holds a DiTPipeline, which has no encode_prompt"),
        ([str(tmp_path / "sd"), str(prompts)], "holds a StableDiffusionPipeline, whose encode_prompt the diffusers "
                                               "backbone's prompt sets do not follow; encode-prompts runs "
                                               "StableDiffusion3Pipeline, FluxPipeline, SanaPipeline"),
        ([str(folder), str(prompts), "--dtype", "half"], "dtype must be one of float32, float64, bfloat16, float16"),
    ]
    for arguments, message in cases:
        capsys.readouterr()
        assert main(["encode-prompts", *arguments, "--out", str(tmp_path / "x.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("solverbench encode-prompts: error: ") and err.count("\n") == 1, err
        assert __import__("re").search(message, err), (message, err)
    assert not (tmp_path / "x.safetensors").exists()


@pytest.fixture(scope="module")
def flux_and_sana_pipelines(flux, sana, tmp_path_factory):
    """Whole Flux and Sana pipeline folders: tiny CLIP and T5 (Flux), tiny Gemma 2 (Sana), word-level tokenizers."""
    pytest.importorskip("transformers")
    from transformers import CLIPTextConfig, CLIPTextModel, Gemma2Config, Gemma2Model, T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(4)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, pad_token_id=0,
                                        bos_token_id=2, eos_token_id=3)).eval()
    t5 = T5EncoderModel(T5Config(vocab_size=len(WORDS), d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                                 pad_token_id=0, eos_token_id=3, decoder_start_token_id=0)).eval()
    gemma = Gemma2Model(Gemma2Config(vocab_size=len(WORDS), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=8, pad_token_id=0,
                                     bos_token_id=2, eos_token_id=3)).eval()
    pipes = {
        "flux": diffusers.FluxPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER), vae=None,
                                       text_encoder=clip, tokenizer=tiny_tokenizer(6), text_encoder_2=t5,
                                       tokenizer_2=tiny_tokenizer(8), transformer=flux["transformer"]),
        "sana": diffusers.SanaPipeline(tokenizer=tiny_tokenizer(400), text_encoder=gemma, vae=None,
                                       transformer=sana["transformer"],
                                       scheduler=diffusers.DPMSolverMultistepScheduler(flow_shift=3.0)),
    }
    for name, pipe in pipes.items():
        pipe.save_pretrained(root / name)
    (root / "prompts.txt").write_text("\n".join(PROMPTS))
    return root, pipes


def pipeline_encoding(kind, pipe):
    """The conditions FluxPipeline's and SanaPipeline's __call__ get from their encode_prompt (Sana's with its
    __call__'s complex human instruction), prompts' then the negative prompt's."""
    if kind == "flux":
        embeds, pooled, _ = pipe.encode_prompt(PROMPTS, None, max_sequence_length=5, device="cpu")
        negative, negative_pooled, _ = pipe.encode_prompt("blurry", None, max_sequence_length=5, device="cpu")
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "negative_prompt_embeds": negative,
                "negative_pooled_prompt_embeds": negative_pooled}
    instruction = __import__("inspect").signature(type(pipe).__call__).parameters["complex_human_instruction"].default
    embeds, mask, negative, negative_mask = pipe.encode_prompt(PROMPTS, True, negative_prompt="blurry", device="cpu",
                                                               max_sequence_length=5,
                                                               complex_human_instruction=instruction)
    return {"prompt_embeds": embeds, "prompt_attention_mask": mask, "negative_prompt_embeds": negative[:1],
            "negative_prompt_attention_mask": negative_mask[:1]}


@pytest.mark.parametrize("kind, resolution", [("flux", 64), ("sana", 256)])
def test_encode_prompts_of_flux_and_sana_pipelines(flux_and_sana_pipelines, kind, resolution):
    from backbones.diffusers_flow.encoding import encode_prompts

    root, pipes = flux_and_sana_pipelines
    out = root / f"{kind}.safetensors"
    summary = encode_prompts(root / kind, root / "prompts.txt", out, negative_prompt="blurry", max_sequence_length=5,
                             progress=False)
    assert summary.startswith(f"wrote {out}: 3 prompts and the negative prompt 'blurry'")
    prompt_set = read_prompt_set(out)
    with torch.no_grad():
        expected = pipeline_encoding(kind, pipes[kind])
    assert set(prompt_set.tensors) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(prompt_set.tensors[name], tensor, rtol=0, atol=1e-6)
    b = DiffusersFlowBackbone(model=root / kind, prompts=out, resolution=resolution)
    latents, labels = noise_and_labels(b.sample_shape)
    assert torch.isfinite(sb.sample(b, "euler", latents, labels, nfe=2, cfg_scale=2.0).samples).all()


def test_random_weights_build_from_a_config_alone_in_the_dtype_and_seeded(sd3, tmp_path):
    """``weights: random``: a transformer folder with only its config.json, for what an architecture costs."""
    folder = tmp_path / "config-only" / "transformer"
    folder.mkdir(parents=True)
    folder.joinpath("config.json").write_text((sd3["model"] / "transformer" / "config.json").read_text())
    one = DiffusersFlowBackbone(model=folder.parent, prompts=sd3["prompts"], weights="random", dtype="bfloat16")
    two = DiffusersFlowBackbone(model=folder.parent, prompts=sd3["prompts"], weights="random", dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in one.transformer.parameters())
    assert all(torch.equal(a, b) for a, b in zip(one.transformer.parameters(), two.transformer.parameters()))
    assert one.identity()["weights"] == "random"
    x, y = noise_and_labels((4, 8, 8))
    assert torch.isfinite(one(x.bfloat16(), torch.full((4,), 0.5), y).float()).all()
    with pytest.raises(ValueError, match="weights must be one of folder, random"):
        DiffusersFlowBackbone(model=sd3["model"], prompts=sd3["prompts"], weights="zeros")
