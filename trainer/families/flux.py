"""Flux.1 (dev, schnell; 12 B): a double- and single-stream transformer trained by flow matching on 2×2-packed
latents, conditioned on T5-XXL's hidden states and CLIP-L's pooled output.  dev is guidance-distilled: the
transformer takes the guidance scale as an input (``guidance_embeds``); schnell does not."""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

FAMILY = Family(
    name="flux",
    display_name="Flux.1",
    generation="Transformers with T5 (2024–25)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engines:FluxEngine",
    denoiser="transformer",
    pipeline_class="FluxPipeline",
    prompt_outputs=("prompt_embeds", "pooled_prompt_embeds", None),  # text ids: the pipeline makes them
    sample_defaults={"guidance_scale": 3.5, "inference_steps": 28},  # dev's distilled guidance
    negative_prompts=False,  # dev's guidance is distilled into the transformer: no second pass to steer
    text_encoders=(
        # BFL's files hold the transformer only; the encoders come as their own files (clip_l, t5xxl).
        TextEncoder("text_encoder", "CLIPTextModel", open_clip=False, single_file_prefix="",
                    label="CLIP-L text encoder"),
        TextEncoder("text_encoder_2", "T5EncoderModel", open_clip=False, tokenizer_kind="t5",
                    single_file_prefix="", label="T5-XXL text encoder"),
    ),
    # As the Flux trainers: logit-normal timesteps with the resolution-dependent shift of Flux's scheduler.
    flow=FlowFacts(sampling="logit_normal", resolution_shift=True),
    sample_scheduler=None,
    max_sequence_length=512,
    single_file=False,
    single_file_writer="trainer.models.flux_layout:pipeline_to_original",
    single_file_reader="trainer.models.flux_single:load_flux_single_file",
    config_folders={"flow_matching": "flux-dev"},  # schnell files: flux-schnell (the reader tells them apart)
    # Per-block modulation: Flux.1's own (Flux.2's BFL files have double_blocks too, but shared modulations).
    file_markers=("img_mod.lin.",),
    blocks=("transformer_blocks", "single_transformer_blocks"),
    memory=MemoryFacts(
        reference_parameters={"transformer": 11_901_408_320, "text_encoder": 123_060_480,
                              "text_encoder_2": 4_762_310_656, "vae": 83_819_683},
        lora_per_rank=1_167_000, text_lora_per_rank=73_700,
        activation_bytes_per_latent_pixel=18 * GB / 128**2, block_count=57),
    kohya=KohyaFacts(modelspec_architecture="flux-1-dev/lora", base_model_version="flux1",
                     lora_family="flux", lora_family_label="Flux.1", original_unet_names=False,
                     transformer_layout="trainer.families.flux:bfl_layout", network_module="networks.lora_flux",
                     lycoris_names="diffusers"),
    tiny={"denoiser": ("FluxTransformer2DModel", {
              "patch_size": 1, "in_channels": 16, "num_layers": 1, "num_single_layers": 2,
              "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 64,
              "pooled_projection_dim": 32, "guidance_embeds": True, "axes_dims_rope": (4, 4, 8)}),
          "vae": {"shift_factor": 0.1159, "scaling_factor": 0.3611, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          "encoders": [("CLIPTextModel", 32, "quick_gelu"), ("T5EncoderModel", 64, "gelu_new")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096})},
)


def bfl_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each module of diffusers' Flux transformer lives in Black Forest Labs' layout (what kohya's
    LoRA names, ComfyUI and Forge use): diffusers path → (BFL path, first output row, rows, the BFL layer's
    rows, halves swapped).  Facts from BFL's model and the diffusers/ComfyUI converters: a double block's
    q, k, v are one ``qkv`` layer (in that order) for the image and for the text stream; a single block's
    ``linear1`` is q, k, v and the MLP's input together (MLP 4× wide), ``linear2`` the attention output and
    the MLP's output together (diffusers' ``proj_out``, whole); the final norm's linear holds (shift, scale)
    where diffusers holds (scale, shift).  Sizes from the transformer's ``config``."""
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    mlp = 4 * inner
    layout: dict[str, tuple[str, int, int, int, bool]] = {}

    def whole(diffusers: str, bfl: str) -> None:
        layout[diffusers] = (bfl, 0, 0, 0, False)  # rows 0: the whole layer

    for i in range(int(config["num_layers"])):
        d, b = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for j, part in enumerate(("to_q", "to_k", "to_v")):
            layout[f"{d}.attn.{part}"] = (f"{b}.img_attn.qkv", j * inner, inner, 3 * inner, False)
        for j, part in enumerate(("add_q_proj", "add_k_proj", "add_v_proj")):
            layout[f"{d}.attn.{part}"] = (f"{b}.txt_attn.qkv", j * inner, inner, 3 * inner, False)
        for diffusers, bfl in (("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj"),
                               ("ff.net.0.proj", "img_mlp.0"), ("ff.net.2", "img_mlp.2"),
                               ("ff_context.net.0.proj", "txt_mlp.0"), ("ff_context.net.2", "txt_mlp.2"),
                               ("norm1.linear", "img_mod.lin"), ("norm1_context.linear", "txt_mod.lin")):
            whole(f"{d}.{diffusers}", f"{b}.{bfl}")
    for i in range(int(config["num_single_layers"])):
        d, b = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for j, part in enumerate(("attn.to_q", "attn.to_k", "attn.to_v")):
            layout[f"{d}.{part}"] = (f"{b}.linear1", j * inner, inner, 3 * inner + mlp, False)
        layout[f"{d}.proj_mlp"] = (f"{b}.linear1", 3 * inner, mlp, 3 * inner + mlp, False)
        whole(f"{d}.proj_out", f"{b}.linear2")
        whole(f"{d}.norm.linear", f"{b}.modulation.lin")
    for diffusers, bfl in (("x_embedder", "img_in"), ("context_embedder", "txt_in"),
                           ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
                           ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
                           ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
                           ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
                           ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
                           ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
                           ("proj_out", "final_layer.linear")):
        whole(diffusers, bfl)
    layout["norm_out.linear"] = ("final_layer.adaLN_modulation.1", 0, 0, 0, True)
    return layout


def bfl_norms(config: dict) -> dict[str, str]:
    """The RMS norms' scales: diffusers parameter → BFL parameter (the rest of the weights: ``bfl_layout``)."""
    norms: dict[str, str] = {}
    for i in range(int(config["num_layers"])):
        d, b = f"transformer_blocks.{i}.attn", f"double_blocks.{i}"
        norms |= {f"{d}.norm_q.weight": f"{b}.img_attn.norm.query_norm.scale",
                  f"{d}.norm_k.weight": f"{b}.img_attn.norm.key_norm.scale",
                  f"{d}.norm_added_q.weight": f"{b}.txt_attn.norm.query_norm.scale",
                  f"{d}.norm_added_k.weight": f"{b}.txt_attn.norm.key_norm.scale"}
    for i in range(int(config["num_single_layers"])):
        d, b = f"single_transformer_blocks.{i}.attn", f"single_blocks.{i}"
        norms |= {f"{d}.norm_q.weight": f"{b}.norm.query_norm.scale",
                  f"{d}.norm_k.weight": f"{b}.norm.key_norm.scale"}
    return norms
