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
    generation="Transformers with an LLM (2025–26)",
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
    # ComfyUI's z_image_turbo_bf16.safetensors (the original layout: fused attention.qkv, attention.out,
    # x_embedder, final_layer; its refiners name it) with qwen_3_4b and ae files beside it: models/zimage_single
    # reads them and writes a full/frozen run's transformer so; merges stay with the UNet families.
    single_file=False,
    single_file_writer="trainer.models.zimage_single:pipeline_to_original",
    single_file_reader="trainer.models.zimage_single:load_zimage_single_file",
    config_folders={"flow_matching": "z-image-turbo"},
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


def original_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each module of diffusers' Z-Image transformer lives in the original layout (Tongyi's release, the
    ``z_image_turbo_bf16.safetensors`` ComfyUI loads): diffusers path → (original path, first output row, rows,
    the original layer's rows, halves swapped), as ``flux.bfl_layout``.  Facts from diffusers' single-file
    converter and ComfyUI's ``z_image_to_diffusers``: a block's q, k, v are one ``attention.qkv`` (in that order,
    ``dim`` rows each), its output ``attention.out``; the feed-forward and modulation keep their names; the
    embedder and final layer of the one patch size (2, frame 1) drop diffusers' ``all_…2-1`` level."""
    dim = int(config["dim"])
    layout: dict[str, tuple[str, int, int, int, bool]] = {}

    def whole(diffusers: str, original: str) -> None:
        layout[diffusers] = (original, 0, 0, 0, False)

    groups = (("layers", int(config["n_layers"])), ("noise_refiner", int(config["n_refiner_layers"])),
              ("context_refiner", int(config["n_refiner_layers"])))
    for group, count in groups:
        for i in range(count):
            block = f"{group}.{i}"
            for j, part in enumerate(("to_q", "to_k", "to_v")):
                layout[f"{block}.attention.{part}"] = (f"{block}.attention.qkv", j * dim, dim, 3 * dim, False)
            whole(f"{block}.attention.to_out.0", f"{block}.attention.out")
            for name in ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "adaLN_modulation.0"):
                whole(f"{block}.{name}", f"{block}.{name}")  # the context refiner has no modulation
    patch = f"{config['all_patch_size'][0]}-{config['all_f_patch_size'][0]}"
    for diffusers, original in ((f"all_x_embedder.{patch}", "x_embedder"),
                                (f"all_final_layer.{patch}.linear", "final_layer.linear"),
                                (f"all_final_layer.{patch}.adaLN_modulation.1", "final_layer.adaLN_modulation.1"),
                                ("cap_embedder.1", "cap_embedder.1"), ("t_embedder.mlp.0", "t_embedder.mlp.0"),
                                ("t_embedder.mlp.2", "t_embedder.mlp.2")):
        whole(diffusers, original)
    return layout


def original_parameters(config: dict) -> dict[str, str]:
    """Single parameters renamed as they are (the rest: ``original_layout``): the attention's q/k RMS norms
    (``norm_q`` → ``q_norm``), the blocks' four RMS norms, the caption embedder's norm and the two pad tokens."""
    renamed = {"cap_embedder.0.weight": "cap_embedder.0.weight", "x_pad_token": "x_pad_token",
               "cap_pad_token": "cap_pad_token"}
    for group, count in (("layers", int(config["n_layers"])), ("noise_refiner", int(config["n_refiner_layers"])),
                         ("context_refiner", int(config["n_refiner_layers"]))):
        for i in range(count):
            block = f"{group}.{i}"
            renamed[f"{block}.attention.norm_q.weight"] = f"{block}.attention.q_norm.weight"
            renamed[f"{block}.attention.norm_k.weight"] = f"{block}.attention.k_norm.weight"
            for norm in ("attention_norm1", "attention_norm2", "ffn_norm1", "ffn_norm2"):
                renamed[f"{block}.{norm}.weight"] = f"{block}.{norm}.weight"
    return renamed
