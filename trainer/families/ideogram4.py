"""Ideogram 4 (Ideogram AI, 2026; 9.3 B): a single-stream DiT — 34 blocks 4608 wide (18 heads of 256), SwiGLU,
tanh-gated AdaLN, interleaved (t, h, w) rotary positions — over one packed sequence of the prompt's tokens and the
image's 2×2 patches of Flux.2's VAE, conditioned on the hidden states of 13 of Qwen3-VL-8B's 36 layers side by side
(53,248 features per token), trained by flow matching; ``Ideogram4Pipeline`` and ``engine_ideogram4`` say how.

Its guidance is asymmetric: a second transformer of the same shape, ``unconditional_transformer``, trained without
text, predicts the unconditional velocity, and the pipeline blends v = g·v_text + (1 − g)·v_uncond (g = 7, then 3
for the last 3 of 48 steps).  A LoRA trains the conditional ``transformer`` only: it is the one the prompt reaches,
the one ``Ideogram4LoraLoaderMixin`` loads a LoRA onto, and the one ai-toolkit's files name (``diffusion_model.`` or
``conditional_transformer.``, which diffusers' converter reads); the unconditional one stays frozen and only samples,
so a preview is the published model's guidance with the adapter on the text side.

The pipeline's call takes prompts as text only (no encoded prompts), so previews encode their prompts where the text
encoder waits; no negative prompt (the unconditional side has no text)."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

# The chat turn Qwen3-VL's tokenizer renders for a text-only user message (what the pipeline encodes), for the
# shipped Qwen3 vocabulary of a tiny or random model (Qwen3's own template cannot render the pipeline's message); a
# real model folder brings its own template.
QWEN3_VL_TEXT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{% if message.content is string %}"
    "{{ message.content }}{% else %}{% for item in message.content %}{% if item.type == 'text' %}{{ item.text }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")

FAMILY = Family(
    name="ideogram4",
    display_name="Ideogram 4",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_ideogram4:Ideogram4Engine",
    denoiser="transformer",
    frozen_components=("unconditional_transformer",),
    pipeline_class="Ideogram4Pipeline",
    prompt_outputs=(),  # its call takes no encoded prompts
    negative_prompts=False,
    guided_above=0.0,
    # A constant guidance_scale needs the default per-step schedule switched off (the pipeline refuses both).
    call_arguments={"guidance_schedule": None},
    prompt_arguments="trainer.diffusion.engine_ideogram4:preview_arguments",
    sample_defaults={"guidance_scale": 7.0, "inference_steps": 48},
    text_encoders=(
        # Qwen3-VL-8B without its LM head (the vision tower is unused for text); no loader applies a LoRA to it.
        TextEncoder("text_encoder", "Qwen3VLModel", open_clip=False, tokenizer_kind="qwen3", single_file_prefix="",
                    label="Qwen3-VL text encoder", lora=False, blocks=("language_model.layers",),
                    chat_template=QWEN3_VL_TEXT_TEMPLATE),
    ),
    # σ as the pipeline's schedule spreads it: logit-normal, spread 1.5, shifted by the image's size (the engine).
    flow=FlowFacts(sampling="logit_normal", logit_std=1.5),
    sample_scheduler=None,
    max_sequence_length=2048,  # the pipeline's default: longer prompts are refused (by name, engine_ideogram4)
    single_file=False,
    # A full/frozen run's transformer is also written in Ideogram's layout, for ComfyUI's Load Diffusion Model.
    single_file_writer="trainer.models.ideogram4_layout:pipeline_to_original",
    # ComfyUI's files: ideogram4*.safetensors with ideogram4_unconditional* beside it, qwen3vl_8b, flux2-vae.
    single_file_reader="trainer.models.ideogram4_single:load_ideogram4_single_file",
    config_folders={"flow_matching": "ideogram-4"},
    # Ideogram's own files (ComfyUI's ideogram4*.safetensors, q, k, v fused in attention.qkv): the text
    # projection's name is theirs alone.
    file_markers=("llm_cond_proj.",),
    blocks=("layers",),
    memory=MemoryFacts(
        # Counted on the meta device: the transformer from diffusers' defaults (Ideogram 4's config), Qwen3-VL-8B
        # without its LM head, Flux.2's VAE.  The unconditional transformer, as large again, is counted as the
        # base's frozen weights are (Family.frozen_components).
        reference_parameters={"transformer": 9_279_288_448, "unconditional_transformer": 9_279_288_448,
                              "text_encoder": 8_144_793_840, "vae": 84_046_115},
        lora_per_rank=1_253_376, text_lora_per_rank=0,  # to_q/k/v/out.0 of 34 blocks, 4608 wide
        # 1024 px: 4096 image tokens and the prompt's through 34 blocks 4608 wide (Z-Image: 34 blocks 3840 wide,
        # 12 GB), scaled by width.
        activation_bytes_per_latent_pixel=14.5 * GB / 128**2,
        quantizable_share=0.968, block_count=34, text_quantizable_share=0.853),
    # ai-toolkit's layout: diffusion_model. + the original module names (ComfyUI's Ideogram 4 model's, which its
    # generic LoRA names address), q, k, v fused in attention.qkv; diffusers' Ideogram 4 converter reads it too.
    kohya=KohyaFacts(modelspec_architecture="ideogram-4/lora", base_model_version="ideogram4",
                     lora_family="ideogram4", lora_family_label="Ideogram 4", original_unet_names=False,
                     transformer_layout="trainer.families.ideogram4:original_layout",
                     original_prefix="diffusion_model."),
    tiny={"denoiser": ("Ideogram4Transformer2DModel", {
              "in_channels": 16, "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
              "intermediate_size": 64, "adaln_dim": 16, "llm_features_dim": 13 * 32, "mrope_section": (2, 2, 2)}),
          "frozen": ("unconditional_transformer",),
          "vae_class": "AutoencoderKLFlux2",
          "vae": {"block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "latent_channels": 4,
                  "norm_num_groups": 8, "sample_size": 64},
          # 36 layers: the pipeline reads the hidden states of 13 of them, up to the 36th (13 × 32 wide).
          "encoders": [("Qwen3VLModel", 32, "silu", 36)],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {"num_train_timesteps": 1000, "shift": 1.0})},
)


def original_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' ``Ideogram4Transformer2DModel`` lives in Ideogram's own layout (ai-toolkit's
    ``diffusion_model.`` LoRA names): diffusers path → (original path, first output row, rows, the original layer's
    rows, halves swapped), as ``flux.bfl_layout``.  Facts from diffusers' ``_convert_non_diffusers_ideogram4_lora_
    to_diffusers``: a block's q, k, v are one ``attention.qkv`` (in that order), its output ``attention.o``; every
    other layer has the same name on both sides."""
    width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    layout: dict[str, tuple[str, int, int, int, bool]] = {}
    for i in range(int(config["num_layers"])):
        block = f"layers.{i}"
        for j, part in enumerate(("to_q", "to_k", "to_v")):
            layout[f"{block}.attention.{part}"] = (f"{block}.attention.qkv", j * width, width, 3 * width, False)
        layout[f"{block}.attention.to_out.0"] = (f"{block}.attention.o", 0, 0, 0, False)
        for name in ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "adaln_modulation"):
            layout[f"{block}.{name}"] = (f"{block}.{name}", 0, 0, 0, False)
    for name in ("input_proj", "llm_cond_proj", "t_embedding.mlp_in", "t_embedding.mlp_out", "adaln_proj",
                 "final_layer.linear", "final_layer.adaln_modulation"):
        layout[name] = (name, 0, 0, 0, False)
    return layout
