"""Flux.2's facts, shared by its variants (klein 4B/9B in ``flux2klein``; dev, 32 B, in ``flux2dev``): a double- and
single-stream transformer on 2×2-patchified latents of its 32-channel VAE, normalised by the VAE's batch-norm
statistics, with 4-axis rotary positions (time, row, column, token), conditioned on three hidden states of a
language model stacked side by side, trained by flow matching.

Unlike Flux.1 the modulations are shared (one for all double blocks' image stream, one for their text stream, one
for the single blocks), the feed-forwards are SwiGLU without biases, and a single block's q, k, v and MLP input are
already one layer in diffusers (``attn.to_qkv_mlp_proj``, BFL's ``linear1``), its outputs another (``attn.to_out``,
``linear2``): only the double blocks' q, k, v are fused in Black Forest Labs' layout and split in diffusers'.

Timesteps as musubi-tuner's ``flux2_shift`` (its recommended Flux.2 scheme): logit-normal σ shifted by exp(μ), μ
from 0.5 at 256 image tokens to 1.15 at 4096 — counted as the transformer sees them (one token per 2×2 patch).
The pipeline samples with its own empirical μ (``compute_empirical_mu``), which depends on the step count too.
"""

from trainer.families.base import FlowFacts
from trainer.families.flux import bfl_norms as bfl_norms  # q/k norms: named as Flux.1's (re-exported)

FLOW = FlowFacts(sampling="logit_normal", resolution_shift=True, base_shift=0.5, max_shift=1.15, base_seq_len=256,
                 max_seq_len=4096)
BLOCKS = ("transformer_blocks", "single_transformer_blocks")
# BFL files name the transformer by this key (diffusers' own single-file detection reads it: "flux2").
FILE_MARKERS = ("single_stream_modulation.lin.",)
# The scheduler every released Flux.2 model ships (dynamic shifting; the pipeline passes its own μ).
SCHEDULER = ("FlowMatchEulerDiscreteScheduler", {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
    "base_image_seq_len": 256, "max_image_seq_len": 4096, "time_shift_type": "exponential"})


def bfl_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' ``Flux2Transformer2DModel`` lives in Black Forest Labs' layout (the
    ``flux-2-klein-4b.safetensors`` ComfyUI loads, and the names kohya/musubi-tuner and ai-toolkit LoRAs use):
    diffusers path → (BFL path, first output row, rows, the BFL layer's rows, halves swapped), as
    ``flux.bfl_layout``.  Facts from diffusers' ``convert_flux2_transformer_checkpoint_to_diffusers`` and its
    Flux.2 LoRA converters: a double block's q, k, v are one ``qkv`` (in that order) per stream; the final norm's
    linear holds (shift, scale) where diffusers holds (scale, shift); everything else is one layer each side."""
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    layout: dict[str, tuple[str, int, int, int, bool]] = {}

    def whole(diffusers: str, bfl: str) -> None:
        layout[diffusers] = (bfl, 0, 0, 0, False)

    for i in range(int(config["num_layers"])):
        d, b = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for j, part in enumerate(("to_q", "to_k", "to_v")):
            layout[f"{d}.attn.{part}"] = (f"{b}.img_attn.qkv", j * inner, inner, 3 * inner, False)
        for j, part in enumerate(("add_q_proj", "add_k_proj", "add_v_proj")):
            layout[f"{d}.attn.{part}"] = (f"{b}.txt_attn.qkv", j * inner, inner, 3 * inner, False)
        for diffusers, bfl in (("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj"),
                               ("ff.linear_in", "img_mlp.0"), ("ff.linear_out", "img_mlp.2"),
                               ("ff_context.linear_in", "txt_mlp.0"), ("ff_context.linear_out", "txt_mlp.2")):
            whole(f"{d}.{diffusers}", f"{b}.{bfl}")
    for i in range(int(config["num_single_layers"])):
        whole(f"single_transformer_blocks.{i}.attn.to_qkv_mlp_proj", f"single_blocks.{i}.linear1")
        whole(f"single_transformer_blocks.{i}.attn.to_out", f"single_blocks.{i}.linear2")
    for diffusers, bfl in (("x_embedder", "img_in"), ("context_embedder", "txt_in"),
                           ("time_guidance_embed.timestep_embedder.linear_1", "time_in.in_layer"),
                           ("time_guidance_embed.timestep_embedder.linear_2", "time_in.out_layer"),
                           ("time_guidance_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
                           ("time_guidance_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
                           ("double_stream_modulation_img.linear", "double_stream_modulation_img.lin"),
                           ("double_stream_modulation_txt.linear", "double_stream_modulation_txt.lin"),
                           ("single_stream_modulation.linear", "single_stream_modulation.lin"),
                           ("proj_out", "final_layer.linear")):
        whole(diffusers, bfl)
    layout["norm_out.linear"] = ("final_layer.adaLN_modulation.1", 0, 0, 0, True)
    return layout
