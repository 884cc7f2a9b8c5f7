"""Stable Diffusion 3.5 (Medium 2.5 B, Large 8 B): an MMDiT transformer trained by flow matching, three text
encoders — CLIP-L and OpenCLIP bigG (penultimate hidden states side by side, padded to T5's width, and their
pooled projections) and T5-XXL (optional in the pipeline; its hidden states follow the CLIP ones)."""

from collections.abc import Iterable

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="sd3",
    display_name="Stable Diffusion 3.5",
    generation="Transformers with T5 (2024–25)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engines:SD3Engine",
    denoiser="transformer",
    pipeline_class="StableDiffusion3Pipeline",
    prompt_outputs=("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                    "negative_pooled_prompt_embeds"),
    sample_defaults={"guidance_scale": 4.5, "inference_steps": 28},
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
    # Stability's single files (sd3.5_large.safetensors, sd3.5_medium.safetensors: the MMDiT under
    # model.diffusion_model., the VAE, and the three encoders under text_encoders.*) are read by
    # models/sd3_single and written by models/sd3_layout; merges stay with the UNet families (single_file).
    single_file=False,
    single_file_writer="trainer.models.sd3_layout:pipeline_to_original",
    single_file_reader="trainer.models.sd3_single:load_sd3_single_file",
    config_folders={"flow_matching": "sd3.5-large"},  # Medium files: sd3.5-medium (the reader tells them apart)
    file_markers=("joint_blocks.",),
    blocks=("transformer_blocks",),
    memory=MemoryFacts(
        # SD 3.5 Large; Medium is 2.5 B (the block tree's counts replace these when the model is known).
        reference_parameters={"transformer": 8_056_627_520, "text_encoder": 123_650_304,
                              "text_encoder_2": 694_659_840, "text_encoder_3": 4_762_310_656, "vae": 83_819_683},
        lora_per_rank=739_000, text_lora_per_rank=73_700 + 327_000,
        activation_bytes_per_latent_pixel=12 * GB / 128**2, block_count=38),
    kohya=KohyaFacts(modelspec_architecture="stable-diffusion-v3.5-large/lora", base_model_version="sd3",
                     lora_family="sd3", lora_family_label="Stable Diffusion 3.5", original_unet_names=False,
                     transformer_layout="trainer.families.sd3:sai_layout", network_module="networks.lora_sd3",
                     lycoris_names="diffusers"),
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


def sai_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each module of diffusers' SD3 transformer lives in Stability's MMDiT layout (what kohya's
    ``networks/lora_sd3.py`` names, ComfyUI and Stability's single files use): diffusers path → (SAI path,
    first output row, rows, the SAI layer's rows, halves swapped), as ``flux.bfl_layout``.  Facts from SAI's
    MMDiT and the diffusers/ComfyUI converters: a joint block's image q, k, v are ``x_block.attn.qkv`` (in that
    order), its text q, k, v ``context_block.attn.qkv``, and MMDiT-X's second image attention (Medium's first
    13 blocks) ``x_block.attn2.qkv``; the last block's text stream only feeds attention (no ``attn.proj``, no
    MLP), and its modulation and the final layer's hold (shift, scale) where diffusers holds (scale, shift).
    Sizes from the transformer's ``config``."""
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    layers = int(config["num_layers"])
    layout: dict[str, tuple[str, int, int, int, bool]] = {}

    def whole(diffusers: str, sai: str, swapped: bool = False) -> None:
        layout[diffusers] = (sai, 0, 0, 0, swapped)  # rows 0: the whole layer

    def fused(diffusers: str, parts: tuple[str, str, str], sai: str) -> None:
        for j, part in enumerate(parts):
            layout[f"{diffusers}.{part}"] = (sai, j * inner, inner, 3 * inner, False)

    dual = {int(i) for i in config.get("dual_attention_layers") or ()}
    for i in range(layers):
        d, s = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        last = i == layers - 1
        fused(f"{d}.attn", ("to_q", "to_k", "to_v"), f"{s}.x_block.attn.qkv")
        fused(f"{d}.attn", ("add_q_proj", "add_k_proj", "add_v_proj"), f"{s}.context_block.attn.qkv")
        whole(f"{d}.attn.to_out.0", f"{s}.x_block.attn.proj")
        if i in dual:
            fused(f"{d}.attn2", ("to_q", "to_k", "to_v"), f"{s}.x_block.attn2.qkv")
            whole(f"{d}.attn2.to_out.0", f"{s}.x_block.attn2.proj")
        whole(f"{d}.norm1.linear", f"{s}.x_block.adaLN_modulation.1")
        whole(f"{d}.norm1_context.linear", f"{s}.context_block.adaLN_modulation.1", swapped=last)
        whole(f"{d}.ff.net.0.proj", f"{s}.x_block.mlp.fc1")
        whole(f"{d}.ff.net.2", f"{s}.x_block.mlp.fc2")
        if not last:
            whole(f"{d}.attn.to_add_out", f"{s}.context_block.attn.proj")
            whole(f"{d}.ff_context.net.0.proj", f"{s}.context_block.mlp.fc1")
            whole(f"{d}.ff_context.net.2", f"{s}.context_block.mlp.fc2")
    for diffusers, sai in (("pos_embed.proj", "x_embedder.proj"), ("context_embedder", "context_embedder"),
                           ("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
                           ("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
                           ("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0"),
                           ("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2"),
                           ("proj_out", "final_layer.linear")):
        whole(diffusers, sai)
    whole("norm_out.linear", "final_layer.adaLN_modulation.1", swapped=True)
    return layout


def sai_parameters(config: dict) -> dict[str, str]:
    """Single parameters renamed as they are (the rest of the weights: ``sai_layout``): the positional table
    and the attention's RMS norm scales (SD 3.5's ``qk_norm``; SD 3.0 has none)."""
    renamed = {"pos_embed.pos_embed": "pos_embed"}
    dual = {int(i) for i in config.get("dual_attention_layers") or ()}
    if not config.get("qk_norm"):
        return renamed
    for i in range(int(config["num_layers"])):
        d, s = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        attentions = [("attn", "x_block.attn", "norm_q", "norm_k"),
                      ("attn", "context_block.attn", "norm_added_q", "norm_added_k")]
        if i in dual:
            attentions.append(("attn2", "x_block.attn2", "norm_q", "norm_k"))
        for module, sai, q, k in attentions:
            for kind in ("weight", "bias"):
                renamed[f"{d}.{module}.{q}.{kind}"] = f"{s}.{sai}.ln_q.{kind}"
                renamed[f"{d}.{module}.{k}.{kind}"] = f"{s}.{sai}.ln_k.{kind}"
    return renamed


def transformer_variant(keys: Iterable[str]) -> str:
    """``sd3.5-medium`` (MMDiT-X: a second image attention, ``x_block.attn2``, in its first blocks) or
    ``sd3.5-large`` (Large and Large Turbo share one architecture), from a single file's tensor names."""
    return "sd3.5-medium" if any(".x_block.attn2." in key for key in keys) else "sd3.5-large"
