"""Qwen-Image (Alibaba Qwen, 20.4 B): an MMDiT of 60 double-stream blocks on 2×2-packed latents of its own video-style
VAE (``AutoencoderKLQwenImage``, per-channel latent mean and std), conditioned on the last hidden state of
Qwen2.5-VL-7B (a fixed system prompt around the user's, whose first 34 tokens are dropped; each prompt as long as it
is, padded with a mask), trained by flow matching with the resolution-dependent shift of its scheduler.

Its pipeline guides with ``true_cfg_scale`` (its ``guidance_scale`` is for guidance-distilled models) and only when
it has a negative prompt; ``encode_prompt`` encodes one side, so previews encode the negative prompt apart."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="qwenimage",
    display_name="Qwen-Image",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engines:QwenImageEngine",
    denoiser="transformer",
    pipeline_class="QwenImagePipeline",
    prompt_outputs=("prompt_embeds", "prompt_embeds_mask"),
    negative_outputs=("negative_prompt_embeds", "negative_prompt_embeds_mask"),
    guidance_argument="true_cfg_scale",
    negative_prompt=" ",  # guidance needs a negative prompt; diffusers' examples give " "
    text_encoders=(
        # Qwen2.5's byte-level BPE is Qwen3's (the shipped files); its special tokens are Qwen3's first 22.
        # Its 15.5 GB in bf16 are more than a 16 GB card holds while it encodes: model.text_encoder_quantization
        # stores its language model's layers (and the unused vision tower's) in fewer bits.
        TextEncoder("text_encoder", "Qwen2_5_VLForConditionalGeneration", open_clip=False, tokenizer_kind="qwen3",
                    single_file_prefix="", label="Qwen2.5-VL text encoder", lora=False,
                    blocks=("model.language_model.layers", "model.visual.blocks")),
    ),
    # As musubi-tuner's qwen_shift: logit-normal σ shifted by exp(μ), μ from 0.5 at 256 image tokens to 0.9 at
    # 8192 — the constants of Qwen-Image's own scheduler (dynamic shifting).
    flow=FlowFacts(sampling="logit_normal", resolution_shift=True, base_shift=0.5, max_shift=0.9, base_seq_len=256,
                   max_seq_len=8192),
    sample_scheduler=None,
    max_sequence_length=1024,  # the pipeline's limit, after the system prompt's 34 tokens
    # ComfyUI's qwen_image_bf16 / _fp8_e4m3fn.safetensors (diffusers' keys; txt_norm names it) with the
    # qwen_2.5_vl_7b and qwen_image_vae files beside it: models/qwenimage_single reads them and writes a full/frozen
    # run's transformer so; merges stay with the UNet families.
    single_file=False,
    single_file_writer="trainer.models.qwenimage_single:pipeline_to_comfy",
    single_file_reader="trainer.models.qwenimage_single:load_qwenimage_single_file",
    config_folders={"flow_matching": "qwen-image"},
    file_markers=("txt_norm.",),
    blocks=("transformer_blocks",),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/qwen-image: the transformer, Qwen2.5-VL-7B with
        # its vision tower and LM head (loaded whole by the pipeline), the VAE.
        reference_parameters={"transformer": 20_430_401_088, "text_encoder": 8_292_166_656, "vae": 126_892_531},
        lora_per_rank=1_474_560, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens and the prompt's through 60 double-stream blocks 3072 wide (Flux, 18 GB: 19
        # double-stream and 38 single-stream blocks as wide).
        activation_bytes_per_latent_pixel=28 * GB / 128**2,
        quantizable_share=0.998, block_count=60, text_quantizable_share=0.846),
    # musubi-tuner's Qwen-Image LoRA (networks.lora_qwen_image) names the modules as diffusers does, flattened:
    # lora_unet_transformer_blocks_0_attn_to_q; ComfyUI and diffusers' load_lora_weights read that file too.
    kohya=KohyaFacts(modelspec_architecture="qwen-image/lora", base_model_version="qwen_image",
                     lora_family="qwen_image", lora_family_label="Qwen-Image", original_unet_names=False,
                     network_module="networks.lora_qwen_image",
                     transformer_layout="trainer.families.qwenimage:musubi_layout"),
    tiny={"denoiser": ("QwenImageTransformer2DModel", {
              "patch_size": 2, "in_channels": 16, "out_channels": 4, "num_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "joint_attention_dim": 32, "guidance_embeds": False,
              "axes_dims_rope": (8, 4, 4)}),
          "vae_class": "AutoencoderKLQwenImage",
          "vae": {"base_dim": 16, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
                  "temperal_downsample": [False, True, True], "latents_mean": [0.1, -0.2, 0.3, 0.0],
                  "latents_std": [1.5, 0.8, 1.2, 1.0]},
          "encoders": [("Qwen2_5_VLForConditionalGeneration", 32, "silu")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 0.9, "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02,
              "time_shift_type": "exponential"})},
)


BLOCK_LINEARS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
                 "attn.to_out.0", "attn.to_add_out", "img_mod.1", "txt_mod.1", "img_mlp.net.0.proj", "img_mlp.net.2",
                 "txt_mlp.net.0.proj", "txt_mlp.net.2")
OUTER_LINEARS = ("img_in", "txt_in", "proj_out", "norm_out.linear", "time_text_embed.timestep_embedder.linear_1",
                 "time_text_embed.timestep_embedder.linear_2")


def musubi_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' Qwen-Image transformer sits in the layout its kohya-style LoRA names (as
    ``flux.bfl_layout``: diffusers path → (original path, first row, rows, the layer's rows, halves swapped)): the
    same path, whole.  ComfyUI's Qwen-Image model keeps diffusers' module names (``comfy/ldm/qwen_image``), and
    musubi-tuner trains on that naming, so nothing is fused or reordered."""
    blocks = [f"transformer_blocks.{i}.{name}" for i in range(int(config["num_layers"])) for name in BLOCK_LINEARS]
    return {path: (path, 0, 0, 0, False) for path in (*blocks, *OUTER_LINEARS)}
