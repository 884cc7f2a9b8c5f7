"""ERNIE-Image (Baidu, 8 B; and its step-distilled Turbo): a single-stream DiT — 36 blocks 4096 wide, image and
text tokens in one sequence, one shared adaptive-norm modulation — on Flux.2's VAE (32 channels, patchified 2×2
into 128 and normalised by the VAE's batch-norm statistics, as Flux.2's engine already does), conditioned on the
penultimate hidden state of Ministral 3 (3 B, inside ``Mistral3Model``; its Pixtral vision tower is loaded but
unused) over the prompt's own tokens, each prompt as long as it is.

Its pipeline (``ErnieImagePipeline``) samples σ from 1 to 0 in equal steps shifted by its scheduler's static shift
(4.0), passes the time as σ·1000 and takes the transformer's output as the velocity ε − x₀; it guides with "" when
``guidance_scale`` > 1 (the base model: 4, about 50 steps).  Its optional prompt enhancer (``pe``, a Ministral 3
causal LM that rewrites prompts) is not needed to train or sample and is not loaded.

Reference trainers (musubi-tuner's ``ernie_image_train_network.py``, diffusion-pipe's ``models/ernie_image.py``)
train the diffusers-named transformer by flow matching with the usual logit-normal/shift options; Kamaal draws σ
logit-normal shifted by 4, the shift its sampler uses.  ComfyUI's ERNIE-Image model (``comfy/ldm/ernie``) names
every module as diffusers does, so the kohya file (musubi-tuner's names) is each Linear under its own path."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

# The scheduler ERNIE-Image ships (a static shift; the pipeline passes its own linear σ, which it shifts).
SCHEDULER = ("FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 4.0,
                                                 "use_dynamic_shifting": False})

FAMILY = Family(
    name="ernieimage",
    display_name="ERNIE-Image",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_ernieimage:ErnieImageEngine",
    denoiser="transformer",
    pipeline_class="ErnieImagePipeline",
    # encode_prompt returns one list (an embedding per prompt, each its own length); the negative side is a second
    # call, as the pipeline makes it.
    prompt_outputs=("prompt_embeds",),
    negative_outputs=("negative_prompt_embeds",),
    sample_defaults={"guidance_scale": 4.0, "inference_steps": 50},
    text_encoders=(
        # Mistral's Tekken vocabulary is not shipped (no package provides it): a diffusers folder brings its own,
        # single files take it from model.tokenizer_folder.
        # No loader applies a LoRA to it (ErnieImageLoraLoaderMixin takes the transformer's only).
        TextEncoder("text_encoder", "Mistral3Model", open_clip=False, tokenizer_kind="tekken", single_file_prefix="",
                    label="Ministral 3 text encoder", lora=False,
                    blocks=("language_model.layers", "vision_tower.transformer.layers")),
    ),
    flow=FlowFacts(sampling="logit_normal", shift=4.0),
    sample_scheduler=None,
    single_file=False,
    # A full/frozen run also writes the transformer under its own keys: ComfyUI's ERNIE model names them so.
    single_file_writer="trainer.models.qwenimage_single:pipeline_to_comfy",
    # ComfyUI's files: that transformer, ministral-3-3b and flux2-vae beside it; Tekken from model.tokenizer_folder.
    single_file_reader="trainer.models.ernieimage_single:load_ernieimage_single_file",
    config_folders={"flow_matching": "ernie-image"},
    # Its own names (ComfyUI's too): no other family has a shared-modulation block with ``adaLN_sa_ln``.
    file_markers=("adaLN_sa_ln.",),
    blocks=("layers",),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/ernie-image: the transformer, Mistral3Model
        # (Ministral 3 3B with its Pixtral vision tower, no LM head), Flux.2's VAE.
        reference_parameters={"transformer": 8_033_490_048, "text_encoder": 3_849_090_048, "vae": 84_046_115},
        # to_q/k/v/out.0 of 36 blocks 4096 wide: 36 · 4 · (4096 + 4096).
        lora_per_rank=1_179_648, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens and the prompt's through 36 blocks 4096 wide, every block single-stream
        # (Qwen-Image: 60 double-stream blocks 3072 wide, 28 GB), scaled by blocks × width.
        activation_bytes_per_latent_pixel=22 * GB / 128**2,
        quantizable_share=0.977, block_count=36, text_quantizable_share=0.891),
    kohya=KohyaFacts(modelspec_architecture="ernie-image/lora", base_model_version="ernie_image",
                     lora_family="ernie_image", lora_family_label="ERNIE-Image", original_unet_names=False,
                     network_module="networks.lora_ernie_image",
                     transformer_layout="trainer.families.ernieimage:musubi_layout"),
    tiny={"denoiser": ("ErnieImageTransformer2DModel", {
              "hidden_size": 32, "num_attention_heads": 2, "num_layers": 2, "ffn_hidden_size": 64, "in_channels": 16,
              "out_channels": 16, "text_in_dim": 24, "rope_axes_dim": (4, 6, 6)}),
          # The transformer starts its modulation and output layer at zero (for training from scratch); a tiny
          # model so built would predict nothing and no adapter could learn: they are drawn at random instead.
          "zero_initialised": (("adaLN_modulation.1", "final_linear"), 0.15),
          "vae_class": "AutoencoderKLFlux2",
          "vae": {"block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "latent_channels": 4,
                  "norm_num_groups": 8, "sample_size": 64},
          # Three layers, so the penultimate hidden state the pipeline reads is a layer's output.
          "encoders": [("Mistral3Model", 24, "silu", 3)],
          "scheduler": SCHEDULER},
)

BLOCK_LINEARS = ("self_attention.to_q", "self_attention.to_k", "self_attention.to_v", "self_attention.to_out.0",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.linear_fc2")
OUTER_LINEARS = ("text_proj", "time_embedding.linear_1", "time_embedding.linear_2", "adaLN_modulation.1",
                 "final_norm.linear", "final_linear")


def musubi_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' ERNIE-Image transformer sits in the layout its kohya-style LoRA names (as
    ``flux.bfl_layout``: diffusers path → (original path, first row, rows, the layer's rows, halves swapped)): the
    same path, whole — ComfyUI's model and musubi-tuner's keep diffusers' module names, nothing is fused."""
    blocks = [f"layers.{i}.{name}" for i in range(int(config["num_layers"])) for name in BLOCK_LINEARS]
    outer = [name for name in OUTER_LINEARS if name != "text_proj" or config["text_in_dim"] != config["hidden_size"]]
    return {path: (path, 0, 0, 0, False) for path in (*blocks, *outer)}

