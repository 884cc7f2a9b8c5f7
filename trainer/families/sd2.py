"""Stable Diffusion 2.x: one OpenCLIP ViT-H text encoder (1024 wide); 768 px v-prediction and 512 px ε models."""

from trainer.families.base import GB, Family, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="sd2",
    display_name="Stable Diffusion 2.x",
    generation="Stable Diffusion (2022–23)",
    modes=("frozen", "lora", "dreambooth", "embedding"),
    pipeline_class="StableDiffusionPipeline",
    pipeline_args={"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
    text_encoders=(TextEncoder("text_encoder", "CLIPTextModel", open_clip=True,
                               single_file_prefix="cond_stage_model.model."),),
    # Two published shapes (768 px v-prediction, 512 px epsilon) share the weights' layout.
    config_folders={"v_prediction": "sd2-v", "epsilon": "sd2-base"},
    cross_attention_width=1024,
    v_prediction_by_weights=True,
    memory=MemoryFacts(
        reference_parameters={"unet": 865_910_724, "text_encoder": 340_387_840, "vae": 83_653_863},
        lora_per_rank=220_000, text_lora_per_rank=245_000, activation_bytes_per_latent_pixel=3.5 * GB / 64**2,
        quantizable_share=0.35, block_count=9),
    kohya=KohyaFacts(modelspec_architecture="stable-diffusion-v2-768-v/lora", base_model_version="sd_v2",
                     lora_family="sd1/2", lora_family_label="Stable Diffusion 1.x/2.x",
                     original_unet_names=False, v2=True, name_markers=("down_blocks_0_attentions",),
                     lycoris_names="kohya"),
    tiny={"unet": {"down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                   "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
                   "cross_attention_dim": 32, "attention_head_dim": (2, 4), "use_linear_projection": True},
          "encoders": [("CLIPTextModel", 32, "gelu")], "prediction_type": "v_prediction"},
)
