"""Flux.2 dev (Black Forest Labs, 32 B): Flux.2's transformer (``flux2``'s facts) at full size — 8 double and 48
single blocks 6144 wide — guidance-distilled like Flux.1 dev (the guidance scale is an input of the transformer,
``guidance_embeds``; its pipeline never runs a second, negative pass), conditioned on Mistral Small 3.2 24B
(``Mistral3ForConditionalGeneration``): the hidden states after layers 10, 20 and 30 side by side, of the chat
template's system turn (BFL's system message) and the prompt's user turn, padded to 512 tokens.

Trained as musubi-tuner's ``flux_2_train_network`` trains dev: the guidance input held at 1.0 (``Flux2Engine`` gives
it wherever the transformer has a guidance embedder), σ by ``flux2_shift``; previews at the pipeline's guidance 4 in
28 steps.  Its folder's tokenizer is a ``PixtralProcessor``, which transformers 5 builds only with torchvision: the
loader reads its text tokenizer alone (``TextEncoder.tokenizer_class``), all that text-to-image uses.  Mistral's
Tekken vocabulary ships in no package Kamaal may take it from: a single-file run names the folder that holds it."""

from trainer.families import flux2
from trainer.families.base import GB, Family, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="flux2dev",
    display_name="Flux.2 dev",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_flux2:Flux2Engine",
    denoiser="transformer",
    pipeline_class="Flux2Pipeline",
    prompt_outputs=("prompt_embeds", None),  # (embeddings, text ids): the pipeline makes the ids itself
    sample_defaults={"guidance_scale": 4.0, "inference_steps": 28},  # the pipeline's own (distilled guidance)
    negative_prompts=False,  # guidance-distilled: no second pass to steer
    text_encoders=(
        # ComfyUI keeps it as mistral_3_small_flux2_bf16.safetensors / _fp8 in models/text_encoders; no loader
        # applies a LoRA to it.  24 B (48 GB in bf16): model.text_encoder_quantization stores its language model's
        # and its (unused) vision tower's layers in fewer bits while it encodes.
        TextEncoder("text_encoder", "Mistral3ForConditionalGeneration", open_clip=False, tokenizer_kind="mistral",
                    single_file_prefix="", label="Mistral Small 3.2 text encoder", lora=False,
                    blocks=("model.language_model.layers", "model.vision_tower.transformer.layers"),
                    tokenizer_class="AutoTokenizer"),
    ),
    flow=flux2.FLOW,
    sample_scheduler=None,
    max_sequence_length=512,  # the pipeline pads every prompt to it
    single_file=False,
    single_file_writer="trainer.models.flux2_single:pipeline_to_original",
    single_file_reader="trainer.models.flux2_single:load_flux2dev_single_file",
    config_folders={"flow_matching": "flux2-dev"},
    file_markers=flux2.FILE_MARKERS,
    # klein's files share the markers; klein names the guidance embedder only dev's file has (its file_lacks).
    blocks=flux2.BLOCKS,
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/flux2-dev: the transformer, Mistral Small 3.2 24B
        # whole (its vision tower and LM head, as the pipeline loads it), Flux.2's VAE.
        reference_parameters={"transformer": 32_223_281_152, "text_encoder": 24_011_361_280, "vae": 84_046_115},
        lora_per_rank=393_216, text_lora_per_rank=0,  # to_q/k/v/out.0 of the 8 double blocks, 6144 wide
        # 1024 px: 4096 image tokens and 512 text tokens through 56 blocks 6144 wide (klein 4B: 25 blocks 3072
        # wide, 8 GB; Flux.1: 57 blocks 3072 wide, 18 GB).
        activation_bytes_per_latent_pixel=36 * GB / 128**2,
        quantizable_share=0.97, block_count=56, text_quantizable_share=0.94),
    kohya=KohyaFacts(modelspec_architecture="flux-2-dev/lora", base_model_version="flux2_dev",
                     lora_family="flux2_dev", lora_family_label="Flux.2 dev", original_unet_names=False,
                     transformer_layout="trainer.families.flux2:bfl_layout", network_module="networks.lora_flux_2"),
    tiny={"denoiser": ("Flux2Transformer2DModel", {
              "patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "joint_attention_dim": 96, "timestep_guidance_channels": 32,
              "axes_dims_rope": (4, 4, 4, 4), "guidance_embeds": True}),
          "vae_class": "AutoencoderKLFlux2",
          "vae": {"block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "latent_channels": 4,
                  "norm_num_groups": 8, "sample_size": 64},
          # 30 layers: the pipeline reads the hidden states after layers 10, 20 and 30 (3 × 32 wide = 96).
          "encoders": [("Mistral3ForConditionalGeneration", 32, "silu", 30)],
          "scheduler": flux2.SCHEDULER},
)
