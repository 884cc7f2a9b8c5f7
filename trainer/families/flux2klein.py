"""Flux.2 klein (Black Forest Labs; 4B and 9B, each distilled and base): Flux.2's transformer (``flux2``'s facts)
at consumer sizes — 4B: 5 double and 20 single blocks 3072 wide; 9B: 8 and 24, 4096 wide — without the guidance
input, conditioned on Qwen3 (4B: Qwen3-4B, 9B: Qwen3-8B): the hidden states after layers 9, 18 and 27 side by side,
of the chat template's user turn (thinking off) padded to 512 tokens.

Its pipeline (``Flux2KleinPipeline``) guides with the empty prompt when ``guidance_scale`` > 1, unless the folder's
``is_distilled`` says the model is step-distilled (klein 4B/9B: 4 steps, no guidance); the base models (klein-base)
draw at guidance 4 in about 50 steps.  Trainers (musubi-tuner, ai-toolkit) train the base models; a LoRA trained on
a base model loads on the distilled one.  The 4B is the reference for memory and presets; a 9B folder or file
trains the same way (its size is read from its configs, or from the file's width)."""

from trainer.families import flux2
from trainer.families.base import GB, Family, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="flux2klein",
    display_name="Flux.2 klein",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_flux2:Flux2Engine",
    denoiser="transformer",
    pipeline_class="Flux2KleinPipeline",
    # encode_prompt returns (embeddings, text ids): the pipeline makes the ids itself.  It encodes the negative
    # side (the empty prompt) by a second call of its own, so previews from prompts encoded once do the same.
    prompt_outputs=("prompt_embeds", None),
    negative_outputs=("negative_prompt_embeds", None),
    sample_defaults={"guidance_scale": 4.0, "inference_steps": 28},  # the base models'
    text_encoders=(
        # ComfyUI keeps it as qwen_3_4b.safetensors (Z-Image's file) / qwen_3_8b…; no loader applies a LoRA to it.
        TextEncoder("text_encoder", "Qwen3ForCausalLM", open_clip=False, tokenizer_kind="qwen3", single_file_prefix="",
                    label="Qwen3 text encoder", lora=False),
    ),
    flow=flux2.FLOW,
    sample_scheduler=None,
    max_sequence_length=512,  # the pipeline pads every prompt to it
    single_file=False,
    single_file_writer="trainer.models.flux2_single:pipeline_to_original",
    single_file_reader="trainer.models.flux2_single:load_flux2klein_single_file",
    config_folders={"flow_matching": "flux2-klein-4b"},  # 9B files: flux2-klein-9b (the reader tells them apart)
    file_markers=flux2.FILE_MARKERS,
    file_lacks=("guidance_in.",),  # Flux.2 dev's file: the same markers, and the guidance embedder klein lacks
    blocks=flux2.BLOCKS,
    memory=MemoryFacts(
        # klein 4B, counted on the meta device from resources/model_configs/flux2-klein-4b: the transformer, Qwen3-4B
        # with its (tied) LM head, Flux.2's VAE.
        reference_parameters={"transformer": 3_875_544_576, "text_encoder": 4_022_468_096, "vae": 84_046_115},
        lora_per_rank=122_880, text_lora_per_rank=0,  # to_q/k/v/out.0 of the 5 double blocks, 3072 wide
        # 1024 px: 4096 image tokens and 512 text tokens through 25 blocks 3072 wide (Flux.1: 57 blocks, 18 GB).
        activation_bytes_per_latent_pixel=8 * GB / 128**2,
        quantizable_share=0.95, block_count=25),
    kohya=KohyaFacts(modelspec_architecture="flux-2-klein/lora", base_model_version="flux2_klein",
                     lora_family="flux2_klein", lora_family_label="Flux.2 klein", original_unet_names=False,
                     transformer_layout="trainer.families.flux2:bfl_layout", network_module="networks.lora_flux_2"),
    tiny={"denoiser": ("Flux2Transformer2DModel", {
              "patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "joint_attention_dim": 96, "timestep_guidance_channels": 32,
              "axes_dims_rope": (4, 4, 4, 4), "guidance_embeds": False}),
          "vae_class": "AutoencoderKLFlux2",
          "vae": {"block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "latent_channels": 4,
                  "norm_num_groups": 8, "sample_size": 64},
          # 27 layers: the pipeline reads the hidden states after layers 9, 18 and 27 (3 × 32 wide = 96).
          "encoders": [("Qwen3ForCausalLM", 32, "silu", 27)],
          "scheduler": flux2.SCHEDULER},
)
