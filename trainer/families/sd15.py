"""Stable Diffusion 1.x: one OpenAI CLIP ViT-L text encoder (768 wide), an ε-prediction UNet."""

from trainer.families.base import GB, Family, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="sd15",
    display_name="Stable Diffusion 1.x",
    generation="Stable Diffusion (2022–23)",
    modes=("frozen", "lora", "dreambooth", "embedding"),
    pipeline_class="StableDiffusionPipeline",
    # No NSFW checker (a trainer previews its own samples).
    pipeline_args={"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    text_encoders=(TextEncoder("text_encoder", "CLIPTextModel", open_clip=False,
                               single_file_prefix="cond_stage_model.transformer."),),
    config_folders={"epsilon": "sd15", "v_prediction": "sd15"},
    cross_attention_width=768,
    memory=MemoryFacts(
        reference_parameters={"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863},
        lora_per_rank=199_000, text_lora_per_rank=73_700, activation_bytes_per_latent_pixel=3.5 * GB / 64**2,
        quantizable_share=0.31, block_count=9),
    kohya=KohyaFacts(modelspec_architecture="stable-diffusion-v1/lora", base_model_version="sd_v1",
                     lora_family="sd1/2", lora_family_label="Stable Diffusion 1.x/2.x",
                     original_unet_names=False, name_markers=("down_blocks_0_attentions",),
                     lycoris_names="kohya"),
    tiny={"unet": {"down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                   "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
                   "cross_attention_dim": 32, "attention_head_dim": 8},
          "encoders": [("CLIPTextModel", 32, "quick_gelu")], "prediction_type": "epsilon"},
)
