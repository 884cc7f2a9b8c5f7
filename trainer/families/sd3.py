"""Stable Diffusion 3.5 (Medium 2.5 B, Large 8 B): an MMDiT transformer trained by flow matching, three text
encoders — CLIP-L and OpenCLIP bigG (penultimate hidden states side by side, padded to T5's width, and their
pooled projections) and T5-XXL (optional in the pipeline; its hidden states follow the CLIP ones)."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="sd3",
    display_name="Stable Diffusion 3.5",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engines:SD3Engine",
    denoiser="transformer",
    pipeline_class="StableDiffusion3Pipeline",
    prompt_outputs=("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                    "negative_pooled_prompt_embeds"),
    text_encoders=(
        TextEncoder("text_encoder", "CLIPTextModelWithProjection", open_clip=False,
                    single_file_prefix="text_encoders.clip_l.transformer.", label="CLIP-L text encoder"),
        TextEncoder("text_encoder_2", "CLIPTextModelWithProjection", open_clip=True,
                    single_file_prefix="text_encoders.clip_g.transformer.", label="CLIP-G text encoder"),
        TextEncoder("text_encoder_3", "T5EncoderModel", open_clip=False, tokenizer_kind="t5",
                    single_file_prefix="text_encoders.t5xxl.transformer.", label="T5-XXL text encoder"),
    ),
    # SD 3.5's training: logit-normal timesteps (mean 0, std 1) shifted by 3 (its scheduler's shift).
    flow=FlowFacts(sampling="logit_normal", shift=3.0),
    sample_scheduler=None,
    max_sequence_length=256,
    single_file=False,
    file_markers=("joint_blocks.",),
    blocks=("transformer_blocks",),
    memory=MemoryFacts(
        # SD 3.5 Large; Medium is 2.5 B (the block tree's counts replace these when the model is known).
        reference_parameters={"transformer": 8_056_500_000, "text_encoder": 123_650_304,
                              "text_encoder_2": 694_659_840, "text_encoder_3": 4_762_310_656, "vae": 83_819_683},
        lora_per_rank=739_000, text_lora_per_rank=73_700 + 327_000,
        activation_bytes_per_latent_pixel=12 * GB / 128**2),
    kohya=KohyaFacts(modelspec_architecture="stable-diffusion-v3.5-large/lora", base_model_version="sd3",
                     lora_family="sd3", lora_family_label="Stable Diffusion 3.5", original_unet_names=False),
    tiny={"denoiser": ("SD3Transformer2DModel", {
              "sample_size": 8, "patch_size": 2, "in_channels": 4, "out_channels": 4, "num_layers": 2,
              "attention_head_dim": 8, "num_attention_heads": 4, "joint_attention_dim": 64,
              "caption_projection_dim": 32, "pooled_projection_dim": 64, "pos_embed_max_size": 16}),
          "vae": {"shift_factor": 0.0609, "scaling_factor": 1.5305, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          "encoders": [("CLIPTextModelWithProjection", 32, "quick_gelu"),
                       ("CLIPTextModelWithProjection", 32, "gelu"), ("T5EncoderModel", 64, "gelu_new")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 3.0})},
)
