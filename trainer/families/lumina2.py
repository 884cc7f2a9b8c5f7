"""Lumina-Image 2.0 (Alpha-VLLM, 2.6 B): a single-stream DiT of the same "NextDiT" shape as Z-Image — two context
refiner blocks on the prompt, two noise refiner blocks on the image's 2×2 patches, then 26 blocks over both in one
sequence — with grouped-query attention (24 heads, 8 for keys and values), conditioned on the penultimate hidden state
of Gemma-2-2B over a fixed system prompt + " <Prompt Start> " + the user's prompt, padded to 256 tokens with its mask
(the transformer reads each prompt's real tokens only), on Flux's VAE, trained by flow matching.

Its own conventions (``Lumina2Pipeline``), which it shares with Z-Image: the transformer's time runs the other way
(t = 1 − σ, 1 being the clean image) and it predicts x₀ − ε; the engine turns both round, so the loss is SD 3's.  The
pipeline guides (classifier-free, normalised to the conditional prediction's norm) when ``guidance_scale`` > 1, with
"" as the negative prompt unless one is given; the published model samples at guidance 4 in 30–50 steps."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="lumina2",
    display_name="Lumina 2",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_lumina2:Lumina2Engine",
    denoiser="transformer",
    pipeline_class="Lumina2Pipeline",
    prompt_outputs=("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                    "negative_prompt_attention_mask"),
    sample_defaults={"guidance_scale": 4.0, "inference_steps": 30},
    text_encoders=(
        # Gemma 2 is a language model used as an encoder: neither diffusers' Lumina2LoraLoaderMixin nor ComfyUI
        # applies a LoRA to it.  Its tokenizer is not shipped (the diffusers folder brings its own; single files
        # take the folder named by model.tokenizer_folder).
        TextEncoder("text_encoder", "Gemma2Model", open_clip=False, tokenizer_kind="gemma", single_file_prefix="",
                    label="Gemma 2 text encoder", lora=False),
    ),
    # Logit-normal σ shifted by 6: the shift of Lumina-Image-2.0's scheduler (static; the pipeline's resolution
    # μ is ignored by it) and of kohya's Lumina sampler (``discrete_flow_shift`` 6).
    flow=FlowFacts(sampling="logit_normal", shift=6.0),
    sample_scheduler=None,
    max_sequence_length=256,  # the pipeline's default: system prompt and prompt together, then cut
    # ComfyUI's lumina_2_model_bf16 (the original layout) with gemma_2_2b and ae files beside it, or its
    # all-in-one lumina_2.safetensors: models/lumina2_single reads them (Gemma's tokenizer from
    # model.tokenizer_folder); a full/frozen run's transformer is written in that layout too.
    single_file=False,
    single_file_writer="trainer.models.lumina2_layout:pipeline_to_original",
    single_file_reader="trainer.models.lumina2_single:load_lumina2_single_file",
    config_folders={"flow_matching": "lumina-image-2"},
    # Z-Image's NextDiT keys without its pad tokens.
    file_markers=("context_refiner.",),
    file_lacks=("x_pad_token", "cap_pad_token"),
    blocks=("layers", "noise_refiner", "context_refiner"),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/lumina-image-2: the transformer, Gemma-2-2B
        # without its LM head, Flux's VAE.
        reference_parameters={"transformer": 2_609_769_152, "text_encoder": 2_614_341_888, "vae": 83_819_683},
        # The four attention projections of 30 blocks, 2304 wide, keys and values 768 rows (8 of 24 heads).
        lora_per_rank=460_800, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens and up to 256 text tokens through 30 blocks 2304 wide (Z-Image: 34 blocks
        # 3840 wide, 12 GB), scaled by blocks × width.
        activation_bytes_per_latent_pixel=6.5 * GB / 128**2,
        quantizable_share=0.996, block_count=30),
    # kohya's sd-scripts train Lumina 2 as networks.lora_lumina on the original (NextDiT) modules, q/k/v fused in
    # attention.qkv: the names ComfyUI applies to its Lumina 2 model (lora_unet_ + the diffusion_model key).
    kohya=KohyaFacts(modelspec_architecture="lumina-2/lora", base_model_version="lumina2",
                     lora_family="lumina2", lora_family_label="Lumina 2", original_unet_names=False,
                     transformer_layout="trainer.families.lumina2:original_layout",
                     network_module="networks.lora_lumina"),
    tiny={"denoiser": ("Lumina2Transformer2DModel", {
              "sample_size": 8, "patch_size": 2, "in_channels": 4, "hidden_size": 32, "num_layers": 2,
              "num_refiner_layers": 1, "num_attention_heads": 2, "num_kv_heads": 1, "multiple_of": 16,
              "axes_dim_rope": (4, 6, 6), "axes_lens": (300, 64, 64), "cap_feat_dim": 32}),
          "vae": {"shift_factor": 0.1159, "scaling_factor": 0.3611, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          "encoders": [("Gemma2Model", 32, "gelu_pytorch_tanh")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 6.0, "use_dynamic_shifting": False})},
)


def original_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each module of diffusers' Lumina 2 transformer lives in the original layout (Alpha-VLLM's NextDiT, the
    layout ComfyUI's Lumina 2 model and kohya's ``lora_lumina`` name): diffusers path → (original path, first
    output row, rows, the original layer's rows, halves swapped), as ``flux.bfl_layout``.  Facts from diffusers'
    ``convert_lumina2_to_diffusers``: a block's q, k, v are one ``attention.qkv`` (q's heads, then the key/value
    heads of k and of v), its output ``attention.out``, the feed-forward ``w1``/``w2``/``w3``, the modulation
    ``adaLN_modulation.1``; the time and caption embedders and the final layer have their own names."""
    heads, kv_heads = int(config["num_attention_heads"]), int(config["num_kv_heads"])
    head_dim = int(config["hidden_size"]) // heads
    q_rows, kv_rows = heads * head_dim, kv_heads * head_dim
    layout: dict[str, tuple[str, int, int, int, bool]] = {}

    def whole(diffusers: str, original: str) -> None:
        layout[diffusers] = (original, 0, 0, 0, False)

    groups = (("layers", int(config["num_layers"])), ("noise_refiner", int(config["num_refiner_layers"])),
              ("context_refiner", int(config["num_refiner_layers"])))
    for group, count in groups:
        for i in range(count):
            block = f"{group}.{i}"
            for part, offset, rows in (("to_q", 0, q_rows), ("to_k", q_rows, kv_rows),
                                       ("to_v", q_rows + kv_rows, kv_rows)):
                layout[f"{block}.attn.{part}"] = (f"{block}.attention.qkv", offset, rows, q_rows + 2 * kv_rows, False)
            whole(f"{block}.attn.to_out.0", f"{block}.attention.out")
            for j in (1, 2, 3):
                whole(f"{block}.feed_forward.linear_{j}", f"{block}.feed_forward.w{j}")
            if group != "context_refiner":  # the context refiner has no modulation
                whole(f"{block}.norm1.linear", f"{block}.adaLN_modulation.1")
    for diffusers, original in (("x_embedder", "x_embedder"),
                                ("time_caption_embed.caption_embedder.1", "cap_embedder.1"),
                                ("time_caption_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
                                ("time_caption_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
                                ("norm_out.linear_1", "final_layer.adaLN_modulation.1"),
                                ("norm_out.linear_2", "final_layer.linear")):
        whole(diffusers, original)
    return layout


def original_parameters(config: dict) -> dict[str, str]:
    """Single parameters renamed as they are (the rest: ``original_layout``): the attention's q/k RMS norms
    (``norm_q`` → ``q_norm``), the blocks' norms (``norm1.norm`` → ``attention_norm1`` where the block is modulated,
    ``norm1`` where not: the context refiner), and the caption embedder's norm."""
    renamed = {"time_caption_embed.caption_embedder.0.weight": "cap_embedder.0.weight"}
    for group, count in (("layers", int(config["num_layers"])), ("noise_refiner", int(config["num_refiner_layers"])),
                         ("context_refiner", int(config["num_refiner_layers"]))):
        for i in range(count):
            block = f"{group}.{i}"
            renamed[f"{block}.attn.norm_q.weight"] = f"{block}.attention.q_norm.weight"
            renamed[f"{block}.attn.norm_k.weight"] = f"{block}.attention.k_norm.weight"
            norm1 = "norm1" if group == "context_refiner" else "norm1.norm"
            renamed[f"{block}.{norm1}.weight"] = f"{block}.attention_norm1.weight"
            renamed[f"{block}.norm2.weight"] = f"{block}.attention_norm2.weight"
            renamed[f"{block}.ffn_norm1.weight"] = f"{block}.ffn_norm1.weight"
            renamed[f"{block}.ffn_norm2.weight"] = f"{block}.ffn_norm2.weight"
    return renamed
