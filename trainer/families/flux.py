"""Flux.1 (dev, schnell; 12 B): a double- and single-stream transformer trained by flow matching on 2×2-packed
latents, conditioned on T5-XXL's hidden states and CLIP-L's pooled output.  dev is guidance-distilled: the
transformer takes the guidance scale as an input (``guidance_embeds``); schnell does not."""

from trainer.families.base import Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

GB = 1024**3

FAMILY = Family(
    name="flux",
    display_name="Flux.1",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engines:FluxEngine",
    denoiser="transformer",
    pipeline_class="FluxPipeline",
    text_encoders=(
        # BFL's files hold the transformer only; the encoders come as their own files (clip_l, t5xxl).
        TextEncoder("text_encoder", "CLIPTextModel", open_clip=False, single_file_prefix="",
                    label="CLIP-L text encoder"),
        TextEncoder("text_encoder_2", "T5EncoderModel", open_clip=False, tokenizer_kind="t5",
                    single_file_prefix="", label="T5-XXL text encoder"),
    ),
    # As the Flux trainers: logit-normal timesteps with the resolution-dependent shift of Flux's scheduler.
    flow=FlowFacts(sampling="logit_normal", resolution_shift=True),
    sample_scheduler=None,
    max_sequence_length=512,
    single_file=False,
    file_markers=("double_blocks.", "single_blocks."),
    memory=MemoryFacts(
        reference_parameters={"transformer": 11_901_408_320, "text_encoder": 123_060_480,
                              "text_encoder_2": 4_762_310_656, "vae": 83_819_683},
        lora_per_rank=1_167_000, text_lora_per_rank=73_700,
        activation_bytes_per_latent_pixel=18 * GB / 128**2),
    kohya=KohyaFacts(modelspec_architecture="flux-1-dev/lora", base_model_version="flux1",
                     lora_family="flux", lora_family_label="Flux.1", original_unet_names=False),
    tiny={"denoiser": ("FluxTransformer2DModel", {
              "patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 2,
              "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 64,
              "pooled_projection_dim": 32, "guidance_embeds": True, "axes_dims_rope": (4, 4, 8)}),
          "vae": {"shift_factor": 0.1159, "scaling_factor": 0.3611, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          "encoders": [("CLIPTextModel", 32, "quick_gelu"), ("T5EncoderModel", 64, "gelu_new")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096})},
)
