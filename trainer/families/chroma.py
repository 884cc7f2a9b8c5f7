"""Chroma (lodestones; Chroma1-Base, -HD and the unlocked v-series, 8.9 B): Flux.1-schnell's transformer with its
per-block modulation pruned into one ``distilled_guidance_layer`` — a small MLP that turns the timestep into every
block's shift, scale and gate — and CLIP dropped.  It is conditioned on T5-XXL alone, with the attention mask:
T5 encodes each prompt masked, and the transformer sees the prompt's tokens and the first padding token only
(``ChromaPipeline._get_t5_prompt_embeds``).  Trained by flow matching; sampled with real classifier-free guidance
and a negative prompt (no distilled guidance input).

A variant of Flux.1 (``flux.FAMILY``): the same packed latents, position ids, VAE, T5 and BFL layout, less what the
pruning took out.  Its own: the engine (the mask, no pooled text, no guidance input; lodestones' timestep density),
the layout's guidance layer, the single-file reader (one T5 file, no CLIP) and the kohya names ComfyUI applies."""

from dataclasses import replace

from trainer.families import flux
from trainer.families.base import GB, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

_FLUX_TINY = flux.FAMILY.tiny

FAMILY = replace(
    flux.FAMILY,
    name="chroma",
    display_name="Chroma",
    variant_of="flux",
    engine="trainer.diffusion.engine_chroma:ChromaEngine",
    pipeline_class="ChromaPipeline",
    # encode_prompt: (embeds, text ids, mask, negative embeds, negative text ids, negative mask); the call takes the
    # embeddings with their masks back (the text ids it makes itself).
    prompt_outputs=("prompt_embeds", None, "prompt_attention_mask", "negative_prompt_embeds", None,
                    "negative_prompt_attention_mask"),
    # ChromaPipeline's own defaults: real classifier-free guidance (above 1, with "" or the negative prompt).
    sample_defaults={"guidance_scale": 5.0, "inference_steps": 35},
    text_encoders=(
        # The file beside the transformer in ComfyUI's models/text_encoders (t5xxl_fp16.safetensors).  Not trained
        # by LoRA: Kamaal keeps T5 frozen for every family, and ComfyUI maps no T5 names in a Chroma LoRA.
        TextEncoder("text_encoder", "T5EncoderModel", open_clip=False, tokenizer_kind="t5", single_file_prefix="",
                    label="T5-XXL text encoder", lora=False),
    ),
    # lodestones' own trainer (``flow``'s ``create_distribution``): σ drawn from the density −7.7·(σ − ½)² + 2 on
    # [0, 1] — most mass mid-way, yet every noise level kept — unshifted; ChromaEngine shapes the uniform draw.
    flow=FlowFacts(sampling="uniform"),
    single_file_writer="trainer.models.chroma_single:pipeline_to_original",
    single_file_reader="trainer.models.chroma_single:load_chroma_single_file",
    config_folders={"flow_matching": "chroma"},
    file_markers=("distilled_guidance_layer.",),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/chroma (Chroma1-HD's config); T5-XXL and the
        # Flux VAE as Flux.1 has them.  The blocks are Flux's (same LoRA targets, same activations).
        reference_parameters={"transformer": 8_899_983_424, "text_encoder": 4_762_310_656, "vae": 83_819_683},
        lora_per_rank=1_167_360, text_lora_per_rank=0,
        activation_bytes_per_latent_pixel=18 * GB / 128**2, quantizable_share=0.967, block_count=57),
    kohya=KohyaFacts(modelspec_architecture="chroma/lora", base_model_version="chroma", lora_family="chroma",
                     lora_family_label="Chroma", original_unet_names=False,
                     transformer_layout="trainer.families.chroma:chroma_layout", network_module="networks.lora_flux"),
    tiny={"denoiser": ("ChromaTransformer2DModel", {
              "patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "joint_attention_dim": 64, "axes_dims_rope": (4, 4, 8),
              "approximator_num_channels": 16, "approximator_hidden_dim": 32, "approximator_layers": 2}),
          "vae": _FLUX_TINY["vae"],
          "encoders": [("T5EncoderModel", 64, "gelu_new")],
          "scheduler": _FLUX_TINY["scheduler"]},
)

# The layers the pruning removed: every block's own modulation and the embedders that fed it.
_PRUNED_ENDS = ("norm1.linear", "norm1_context.linear", "norm.linear", "norm_out.linear")


def chroma_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each module of diffusers' Chroma transformer lives in the original layout (lodestones' files, what
    ComfyUI loads and its LoRA names ``lora_unet_double_blocks_0_img_attn_qkv`` / ``diffusion_model.…`` address):
    Flux's BFL layout (``flux.bfl_layout``: fused ``qkv`` and ``linear1``) without the modulation layers, plus the
    approximator — ``distilled_guidance_layer.{in_proj, out_proj}`` as they are, its residual MLPs' ``linear_1``
    / ``linear_2`` as ``layers.N.in_layer`` / ``out_layer`` (facts from diffusers'
    ``convert_chroma_transformer_checkpoint_to_diffusers`` and ComfyUI's ``comfy/ldm/chroma``)."""
    layout = {module: place for module, place in flux.bfl_layout(config).items()
              if not module.endswith(_PRUNED_ENDS) and not module.startswith("time_text_embed.")}
    guidance = "distilled_guidance_layer"
    for name in ("in_proj", "out_proj"):
        layout[f"{guidance}.{name}"] = (f"{guidance}.{name}", 0, 0, 0, False)
    for i in range(int(config.get("approximator_layers", 5))):
        layout[f"{guidance}.layers.{i}.linear_1"] = (f"{guidance}.layers.{i}.in_layer", 0, 0, 0, False)
        layout[f"{guidance}.layers.{i}.linear_2"] = (f"{guidance}.layers.{i}.out_layer", 0, 0, 0, False)
    return layout


def chroma_norms(config: dict) -> dict[str, str]:
    """The RMS norms' scales, diffusers → original: Flux's q/k norms and the approximator's ``norms.N``."""
    norms = flux.bfl_norms(config)
    for i in range(int(config.get("approximator_layers", 5))):
        norms[f"distilled_guidance_layer.norms.{i}.weight"] = f"distilled_guidance_layer.norms.{i}.scale"
    return norms
