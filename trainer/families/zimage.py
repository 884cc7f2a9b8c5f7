"""Z-Image (Tongyi-MAI; Turbo and base, 6.15 B): a single-stream DiT — the image's 2×2 patches and the prompt's
tokens in one sequence through 30 blocks, after two "noise refiner" blocks on the image and two "context refiner"
blocks on the text — conditioned on the penultimate hidden state of Qwen3-4B (the chat template's user turn,
variable length: only the prompt's real tokens, no padding), trained by flow matching.

Its own conventions (``ZImagePipeline``, musubi-tuner's ``zimage_train_network.py``): the transformer's time runs
the other way (it is given t = 1 − σ, 1 being the clean image) and it predicts x₀ − ε, the negative of SD 3's
velocity; the engine turns both round, so the loss is SD 3's.  The pipeline guides (classifier-free, with the
negative prompt) whenever ``guidance_scale`` > 0: Turbo is distilled and draws at guidance 0 in 8–9 steps, the
base model at 3–5 in 30–50."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="zimage",
    display_name="Z-Image",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engines:ZImageEngine",
    denoiser="transformer",
    pipeline_class="ZImagePipeline",
    # encode_prompt returns lists of (tokens, width) tensors, one per prompt, each as long as its prompt.
    prompt_outputs=("prompt_embeds", "negative_prompt_embeds"),
    guided_above=0.0,
    text_encoders=(
        # ComfyUI users keep it as qwen_3_4b.safetensors in models/text_encoders; it is not trained by LoRA
        # (diffusers' and ComfyUI's Z-Image LoRA loaders take the transformer only).
        TextEncoder("text_encoder", "Qwen3Model", open_clip=False, tokenizer_kind="qwen3", single_file_prefix="",
                    label="Qwen3 text encoder", lora=False),
    ),
    # Logit-normal σ shifted by 3, the shift of Z-Image's own scheduler (Turbo's and base's scheduler_config, and
    # ai-toolkit's Z-Image training scheduler); musubi-tuner's guide starts from a shift of 2.
    flow=FlowFacts(sampling="logit_normal", shift=3.0),
    sample_scheduler=None,
    max_sequence_length=512,  # the pipeline's default; a prompt's chat-template tokens beyond it are cut
    single_file=False,
    config_folders={"flow_matching": "z-image-turbo"},
    # ComfyUI's z_image_turbo_bf16.safetensors: the original layout (fused attention.qkv, attention.out,
    # x_embedder, final_layer); its refiners name it.
    file_markers=("noise_refiner.", "context_refiner."),
    blocks=("layers", "noise_refiner", "context_refiner"),
    memory=MemoryFacts(
        # Z-Image (Turbo and base share the architecture): the transformer, Qwen3-4B without its LM head, and
        # Flux's VAE (ae.safetensors), counted on the meta device from resources/model_configs/z-image-turbo.
        reference_parameters={"transformer": 6_154_908_736, "text_encoder": 4_022_468_096, "vae": 83_819_683},
        lora_per_rank=1_044_480, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens and up to ~520 text tokens through 34 blocks 3840 wide (Flux: 57 blocks
        # 3072 wide, two streams in 19 of them, 18 GB).
        activation_bytes_per_latent_pixel=12 * GB / 128**2,
        quantizable_share=0.998, block_count=34),
    kohya=KohyaFacts(modelspec_architecture="z-image/lora", base_model_version="z_image",
                     lora_family="zimage", lora_family_label="Z-Image", original_unet_names=False,
                     network_module="networks.lora_zimage"),
    tiny={"denoiser": ("ZImageTransformer2DModel", {
              "all_patch_size": (2,), "all_f_patch_size": (1,), "in_channels": 4, "dim": 32, "n_layers": 2,
              "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "qk_norm": True, "cap_feat_dim": 32,
              "axes_dims": [4, 6, 6], "axes_lens": [1024, 64, 64]}),
          "vae": {"shift_factor": 0.1159, "scaling_factor": 0.3611, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          "encoders": [("Qwen3Model", 32, "silu")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False})},
)
