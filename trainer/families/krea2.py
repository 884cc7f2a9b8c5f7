"""Krea 2 (Krea AI; Raw = the base model, Turbo = its few-step distillation): a single-stream MMDiT — 28 blocks 6144
wide, 48 query heads and 12 for keys and values, SwiGLU, one shared time modulation plus a learned table per block —
on 2×2-packed latents of Qwen-Image's VAE, conditioned on Qwen3-VL-4B: the hidden states of 12 of its layers (2, 5,
…, 35: ``text_encoder_select_layers``) stacked per token, which a small text-fusion transformer inside the model
collapses to one sequence.  Prompts sit in Qwen-Image's chat template, padded to 512 tokens *in the middle* (prompt,
padding, then the assistant suffix) with positions that count real tokens only; the transformer masks the padding.

The engine keeps each prompt's real tokens (prompt + suffix): the text's rotary positions are all zero and the
text fusion has none, so the transformer reads a set of tokens under a mask and where the padding sat does not
matter — the same caching as Z-Image's and Lumina 2's.  The time is σ, the output the velocity ε − x₀.

σ: logit-normal shifted by exp(μ), μ from 0.5 at 256 image tokens to 1.15 at 6400 — the resolution shift of the base
model's scheduler and pipeline (the Turbo pipeline samples at a fixed μ 1.15, its ``is_distilled``).  Trainers train
Raw (musubi-tuner's ``krea2_train_network`` with ``--dit raw.safetensors``); a LoRA trained on it loads on Turbo.
The pipeline guides whenever ``guidance_scale`` > 0 (cond + g·(cond − uncond), the empty prompt as the negative)."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="krea2",
    display_name="Krea 2",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_krea2:Krea2Engine",
    denoiser="transformer",
    pipeline_class="Krea2Pipeline",
    # encode_prompt encodes one side: previews encode the negative prompt ("" unless one is given) by a second call.
    prompt_outputs=("prompt_embeds", "prompt_embeds_mask"),
    negative_outputs=("negative_prompt_embeds", "negative_prompt_embeds_mask"),
    guided_above=0.0,
    sample_defaults={"guidance_scale": 4.5, "inference_steps": 28},  # Raw's, as the pipeline's example gives them
    text_encoders=(
        # Qwen3-VL's tokenizer is Qwen3's byte-level BPE with the same 26 special tokens (the shipped files; the
        # template's 34-token system prefix and 5-token suffix count as the pipeline expects).  A language model used
        # as an encoder: diffusers' Krea2LoraLoaderMixin loads the transformer's LoRA only.
        TextEncoder("text_encoder", "Qwen3VLModel", open_clip=False, tokenizer_kind="qwen3", single_file_prefix="",
                    label="Qwen3-VL text encoder", lora=False, blocks=("language_model.layers", "visual.blocks")),
    ),
    flow=FlowFacts(sampling="logit_normal", resolution_shift=True, base_shift=0.5, max_shift=1.15, base_seq_len=256,
                   max_seq_len=6400),
    sample_scheduler=None,
    max_sequence_length=512,  # the pipeline pads every prompt to it (after the system prefix)
    # A full/frozen run's transformer is also written in the original layout, for ComfyUI's Load Diffusion Model.
    single_file=False,
    single_file_writer="trainer.models.krea2_layout:pipeline_to_original",
    single_file_reader="trainer.models.krea2_single:load_krea2_single_file",
    config_folders={"flow_matching": "krea2"},
    # The original checkpoints (krea-ai's raw/turbo files, ComfyUI's and musubi-tuner's SingleStreamDiT) name the text
    # fusion so; models/krea2_single reads them with qwen3vl_4b and qwen_image_vae beside them.
    file_markers=("txtfusion.",),
    # The 28 main blocks are what quantization and block swap take; the small text fusion stays as it is (as
    # musubi-tuner's fp8 keeps it).
    blocks=("transformer_blocks",),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/krea2: the transformer, Qwen3-VL-4B (language model
        # and vision tower, as Qwen3VLModel loads it: no LM head), Qwen-Image's VAE.
        reference_parameters={"transformer": 12_820_073_036, "text_encoder": 4_437_815_808, "vae": 126_892_531},
        # to_q/k/v/out.0 of 28 blocks 6144 wide, keys and values 1536 rows (12 of 48 heads).
        lora_per_rank=1_118_208, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens and up to 517 text tokens through 28 blocks 6144 wide with a 16384-wide SwiGLU
        # (Qwen-Image: 60 double-stream blocks 3072 wide, 28 GB), scaled by blocks × width.
        activation_bytes_per_latent_pixel=26 * GB / 128**2,
        quantizable_share=0.948, block_count=28, text_quantizable_share=0.887),
    # musubi-tuner's networks.lora_krea2 names every Linear of the original SingleStreamDiT, whole
    # (lora_unet_blocks_0_attn_wq): the names ComfyUI applies to its Krea 2 model (lora_unet_ + the diffusion_model
    # key).  diffusers' Krea2LoraLoaderMixin reads the diffusers file.
    kohya=KohyaFacts(modelspec_architecture="krea-2/lora", base_model_version="krea2", lora_family="krea2",
                     lora_family_label="Krea 2", original_unet_names=False, network_module="networks.lora_krea2",
                     transformer_layout="trainer.families.krea2:original_layout"),
    tiny={"denoiser": ("Krea2Transformer2DModel", {
              "in_channels": 16, "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
              "num_key_value_heads": 1, "intermediate_size": 64, "timestep_embed_dim": 16, "text_hidden_dim": 32,
              "num_text_layers": 12, "text_num_attention_heads": 2, "text_num_key_value_heads": 2,
              "text_intermediate_size": 64, "num_layerwise_text_blocks": 1, "num_refiner_text_blocks": 1,
              "axes_dims_rope": (4, 6, 6)}),
          "vae_class": "AutoencoderKLQwenImage",
          "vae": {"base_dim": 16, "z_dim": 4, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1,
                  "temperal_downsample": [False, True, True], "latents_mean": [0.1, -0.2, 0.3, 0.0],
                  "latents_std": [1.5, 0.8, 1.2, 1.0]},
          # 36 layers, as Qwen3-VL-4B: the pipeline's default taps (2, 5, …, 35) are real layers' outputs.
          "encoders": [("Qwen3VLModel", 32, "silu", 36)],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 6400,
              "time_shift_type": "exponential"})},
)


# Each Linear of a block (the main blocks and the text-fusion blocks alike): diffusers' name → the original's.
BLOCK_LINEARS = {"attn.to_q": "attn.wq", "attn.to_k": "attn.wk", "attn.to_v": "attn.wv", "attn.to_gate": "attn.gate",
                 "attn.to_out.0": "attn.wo", "ff.gate": "mlp.gate", "ff.up": "mlp.up", "ff.down": "mlp.down"}
OUTER_LINEARS = {"img_in": "first", "time_embed.linear_1": "tmlp.0", "time_embed.linear_2": "tmlp.2",
                 "time_mod_proj": "tproj.1", "txt_in.linear_1": "txtmlp.1", "txt_in.linear_2": "txtmlp.3",
                 "text_fusion.projector": "txtfusion.projector", "final_layer.linear": "last.linear"}


def _blocks(config: dict) -> list[tuple[str, str]]:
    """(diffusers, original) path of every block: the main ones, then the text fusion's."""
    pairs = [(f"transformer_blocks.{i}", f"blocks.{i}") for i in range(int(config["num_layers"]))]
    for group, count in (("layerwise_blocks", config["num_layerwise_text_blocks"]),
                         ("refiner_blocks", config["num_refiner_text_blocks"])):
        pairs += [(f"text_fusion.{group}.{i}", f"txtfusion.{group}.{i}") for i in range(int(count))]
    return pairs


def original_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' ``Krea2Transformer2DModel`` lives in the original layout (krea-ai's
    ``SingleStreamDiT``: the released ``raw``/``turbo`` files, ComfyUI's Krea 2 model, musubi-tuner's
    ``networks.lora_krea2`` names): diffusers path → (original path, first row, rows, the layer's rows, halves
    swapped), as ``flux.bfl_layout``.  Nothing is fused or reordered; facts from diffusers'
    ``convert_krea2_transformer_checkpoint_to_diffusers`` and ComfyUI's ``krea2_to_diffusers``."""
    layout = {f"{d}.{part}": (f"{o}.{original}", 0, 0, 0, False)
              for d, o in _blocks(config) for part, original in BLOCK_LINEARS.items()}
    layout |= {d: (o, 0, 0, 0, False) for d, o in OUTER_LINEARS.items()}
    return layout


def original_parameters(config: dict) -> dict[str, str]:
    """Single parameters renamed as they are (the rest: ``original_layout``): the RMS norms' zero-centred scales
    (``norm1.weight`` → ``prenorm.scale``, ``attn.norm_q.weight`` → ``attn.qknorm.qnorm.scale`` …) and the learned
    modulation tables (a main block's (6, width) ``scale_shift_table`` is the original's flat ``mod.lin``: reshaped
    by ``models.krea2_layout``; the final layer's (2, width) one is ``last.modulation.lin`` as it is)."""
    renamed = {"txt_in.norm.weight": "txtmlp.0.scale", "final_layer.norm.weight": "last.norm.scale",
               "final_layer.scale_shift_table": "last.modulation.lin"}
    for d, o in _blocks(config):
        renamed |= {f"{d}.norm1.weight": f"{o}.prenorm.scale", f"{d}.norm2.weight": f"{o}.postnorm.scale",
                    f"{d}.attn.norm_q.weight": f"{o}.attn.qknorm.qnorm.scale",
                    f"{d}.attn.norm_k.weight": f"{o}.attn.qknorm.knorm.scale"}
        if d.startswith("transformer_blocks."):
            renamed[f"{d}.scale_shift_table"] = f"{o}.mod.lin"
    return renamed
