"""Qwen-Image 2.1 (Alibaba Qwen): not a variant of Qwen-Image but a new model under its name — a single-stream,
block-causal transformer of 32 blocks over the joint text/image sequence (``QwenImage21Transformer2DModel``: one
modulation shared by every block, text modulated at t = 0), on 64-channel latents of an RGBA VAE that compresses 16×
(``AutoencoderKLQwenImage21``, per-channel latent mean and std; the transformer reads the latents unpatched, one
token per latent pixel), conditioned on Qwen3-VL's last decoder layer before its final norm, the system prompt's
tokens dropped.  What it shares with Qwen-Image is the flow-matching objective, σ as the time, the ``true_cfg_scale``
guidance, the LoRA loader (``QwenImageLoraLoaderMixin``) and kohya-style ``lora_unet_`` names.

Its pipeline takes a Qwen3-VL ``processor``, whose video half needs torchvision: Kamaal gives it the text half
(``models/qwen_vl_text``), which is all text-to-image reads.  2.1 is meant to be sampled unguided
(``true_cfg_scale`` 1, the pipeline's default); previews guide only when asked to and then with a negative prompt."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="qwenimage21",
    display_name="Qwen-Image 2.1",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_qwenimage21:QwenImage21Engine",
    denoiser="transformer",
    pipeline_class="QwenImage21Pipeline",
    pipeline_parts="trainer.models.qwen_vl_text:pipeline_parts",
    prompt_outputs=("prompt_embeds", "prompt_embeds_mask", None),
    negative_outputs=("negative_prompt_embeds", "negative_prompt_embeds_mask", None),
    guidance_argument="true_cfg_scale",
    negative_prompt=" ",
    sample_defaults={"guidance_scale": 1.0, "inference_steps": 40},  # the pipeline's defaults: unguided, 40 steps
    text_encoders=(
        # Qwen3-VL's byte-level BPE is Qwen3's (the shipped files; <|vision_start|> 151652, <|image_pad|> 151655 …
        # at Qwen3-VL's ids), read through the text half of its processor.
        TextEncoder("text_encoder", "Qwen3VLForConditionalGeneration", open_clip=False, tokenizer_kind="qwen3",
                    single_file_prefix="", label="Qwen3-VL text encoder", lora=False, tokenizer_component="processor",
                    blocks=("model.language_model.layers", "model.visual.blocks")),
    ),
    # The resolution-dependent shift of the pipeline (calculate_shift over the image's token count, one token per
    # latent pixel), with the constants its scheduler config gives; logit-normal σ as for Qwen-Image.
    flow=FlowFacts(sampling="logit_normal", resolution_shift=True, base_shift=0.5, max_shift=1.15, base_seq_len=256,
                   max_seq_len=4096),
    sample_scheduler=None,
    # ComfyUI's transformer file (diffusers' names, the SwiGLU's gate_up fused) with the Qwen3-VL-8B and VAE files
    # beside it: models/qwenimage21_single reads them and writes a full/frozen run's transformer so.
    single_file=False,
    single_file_writer="trainer.models.qwenimage21_single:pipeline_to_comfy",
    single_file_reader="trainer.models.qwenimage21_single:load_qwenimage21_single_file",
    config_folders={"flow_matching": "qwen-image-2.1"},
    # ComfyUI's and diffusers' single-file key for 2.1 (Qwen-Image's transformer has txt_norm, not txt_in.text_norm).
    file_markers=("txt_in.text_norm.",),
    blocks=("transformer_blocks",),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/qwen-image-2.1: the transformer, Qwen3-VL-8B with
        # its vision tower and LM head (loaded whole by the pipeline), the RGBA VAE.
        reference_parameters={"transformer": 7_115_124_736, "text_encoder": 8_767_123_696, "vae": 337_740_404},
        lora_per_rank=1_048_576, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens (16× VAE, no patching) and the prompt's, in one stream through 32 blocks 4096
        # wide: Qwen-Image's 28 GB for 4096 tokens through 60 blocks 3072 wide, scaled by blocks × width (0.71×);
        # per (1024 / 8)² pixels, as the estimate counts latent pixels whatever the VAE.
        activation_bytes_per_latent_pixel=20 * GB / 128**2,
        quantizable_share=0.981, block_count=32, text_quantizable_share=0.824),
    # kohya-style names (lora_unet_ + the module path, flattened, as musubi-tuner names Qwen-Image's) in ComfyUI's
    # layout of 2.1, which keeps diffusers' names except the SwiGLU's gate and up projections, fused as
    # img_mlp.gate_up (gate rows first; diffusers' single-file converter says so).  Whether musubi-tuner or
    # ai-toolkit train 2.1, and under which names, is not checked: their snapshots here predate it.
    kohya=KohyaFacts(modelspec_architecture="qwen-image-2.1/lora", base_model_version="qwen_image_2_1",
                     lora_family="qwen_image_2_1", lora_family_label="Qwen-Image 2.1", original_unet_names=False,
                     network_module="networks.lora_qwen_image",
                     transformer_layout="trainer.families.qwenimage21:comfy_layout"),
    tiny={"denoiser": ("QwenImage21Transformer2DModel", {
              "patch_size": 1, "in_channels": 8, "out_channels": 8, "num_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "context_in_dim": 32, "mlp_ratio": 3, "axes_dims_rope": (4, 6, 6)}),
          "vae_class": "AutoencoderKLQwenImage21",
          "vae": {"base_dim": 8, "decoder_base_dim": 8, "z_dim": 8, "dim_mult": [1, 2, 2, 2, 2], "num_res_blocks": 1,
                  "temperal_downsample": [False, True, True, True],
                  "latents_mean": [0.1, -0.2, 0.3, 0.0, 0.2, -0.1, 0.05, 0.4],
                  "latents_std": [1.5, 0.8, 1.2, 1.0, 0.9, 1.1, 1.3, 0.7]},
          "encoders": [("Qwen3VLForConditionalGeneration", 32, "silu")],
          "processor": "trainer.models.qwen_vl_text:text_processor",
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096})},
)


BLOCK_LINEARS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "img_mlp.proj", "img_mlp.out",
                 "img_mlp.gate_layer")
OUTER_LINEARS = ("img_in", "txt_in.in_layer", "txt_in.out_layer", "modulation.1", "proj_out", "norm_out.linear",
                 "time_text_embed.timestep_embedder.linear_1", "time_text_embed.timestep_embedder.linear_2")


def comfy_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' Qwen-Image 2.1 transformer sits in ComfyUI's layout (as ``flux.bfl_layout``:
    diffusers path → (original path, first row, rows, the layer's rows, halves swapped)): the same path, except the
    SwiGLU's ``gate_layer`` and ``proj``, which ComfyUI holds as one ``img_mlp.gate_up`` with the gate's rows first
    (diffusers' single-file converter splits it so)."""
    width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    hidden = width * int(config.get("mlp_ratio", 3))
    layout: dict[str, tuple[str, int, int, int, bool]] = {}
    for i in range(int(config["num_layers"])):
        for name in BLOCK_LINEARS:
            path = f"transformer_blocks.{i}.{name}"
            layout[path] = (path, 0, 0, 0, False)
        fused = f"transformer_blocks.{i}.img_mlp.gate_up"
        layout[f"transformer_blocks.{i}.img_mlp.gate_layer"] = (fused, 0, hidden, 2 * hidden, False)
        layout[f"transformer_blocks.{i}.img_mlp.proj"] = (fused, hidden, hidden, 2 * hidden, False)
    return {**layout, **{path: (path, 0, 0, 0, False) for path in OUTER_LINEARS}}
