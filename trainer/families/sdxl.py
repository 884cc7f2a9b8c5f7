"""SDXL: two text encoders (OpenAI CLIP ViT-L and OpenCLIP ViT-bigG, hidden states side by side, the second's
pooled output too) and micro-conditioning on the original size, crop and target size."""

from trainer.families.base import GB, Family, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="sdxl",
    display_name="SDXL",
    generation="Stable Diffusion (2022–23)",
    modes=("frozen", "lora", "dreambooth", "embedding"),
    pipeline_class="StableDiffusionXLPipeline",
    pipeline_args={"add_watermarker": False},  # no invisible-watermark dependency
    prompt_outputs=("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                    "negative_pooled_prompt_embeds"),
    text_encoders=(
        TextEncoder("text_encoder", "CLIPTextModel", open_clip=False,
                    single_file_prefix="conditioner.embedders.0.transformer.", label="first text encoder"),
        TextEncoder("text_encoder_2", "CLIPTextModelWithProjection", open_clip=True,
                    single_file_prefix="conditioner.embedders.1.model.", label="second text encoder"),
    ),
    size_conditioning=True,
    prompt_hidden_state="penultimate",
    config_folders={"epsilon": "sdxl-base", "v_prediction": "sdxl-base"},
    memory=MemoryFacts(
        reference_parameters={"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840,
                              "vae": 83_653_863},
        lora_per_rank=1_400_000, text_lora_per_rank=73_700 + 327_000,
        activation_bytes_per_latent_pixel=16 * GB / 128**2,
        quantizable_share=0.87, block_count=7),
    kohya=KohyaFacts(modelspec_architecture="stable-diffusion-xl-v1-base/lora", base_model_version="sdxl_base_v1-0",
                     lora_family="sdxl", lora_family_label="SDXL", original_unet_names=True,
                     version_markers=("xl",), name_markers=("transformer_blocks_1_",), lycoris_names="kohya",
                     implementation="https://github.com/Stability-AI/generative-models"),
    tiny={"unet": {"down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
                   "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
                   "transformer_layers_per_block": (1, 2), "attention_head_dim": (2, 4),
                   "use_linear_projection": True, "addition_embed_type": "text_time",
                   "addition_time_embed_dim": 8,
                   # pooled text (projection 32) + six size/crop numbers × 8
                   "projection_class_embeddings_input_dim": 32 + 6 * 8,
                   # both encoders' hidden states side by side; widths differ, like 768/1280 in SDXL
                   "cross_attention_dim": 32 + 64},
          "encoders": [("CLIPTextModel", 32, "quick_gelu"), ("CLIPTextModelWithProjection", 64, "gelu")],
          "prediction_type": "epsilon"},
)
