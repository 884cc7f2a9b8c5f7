"""Kandinsky 5.0 Image Lite (Kandinsky Lab / Sber, 6 B): a cross-attention DiT — two text blocks refine the prompt,
then 50 visual blocks (self-attention over the image's 2×2 patches with 3D RoPE, cross-attention to the prompt,
feed-forward, each modulated by the time plus CLIP's pooled embedding) — on Flux's VAE (16 channels), conditioned on
the last hidden state of Qwen2.5-VL-7B over a fixed system prompt (whose first 40 tokens are dropped) and on
CLIP ViT-L's pooled output, trained by flow matching (diffusers' ``Kandinsky5T2IPipeline``,
``Kandinsky5Transformer3DModel``).

Its pipeline's own conventions, which the engine follows (``engine_kandinsky5``): latents channels-last with a frame
axis, (batch, 1, h, w, c), scaled by the VAE's ``scaling_factor`` and *not* shifted (the pipeline decodes
``latents / scaling_factor``, ignoring Flux's ``shift_factor``); the time σ·1000; the output the velocity ε − x₀;
each prompt as long as it is (the transformer attends to every text token it is given, with no mask).  It guides with
"" as the negative prompt when ``guidance_scale`` > 1, and snaps every size to one of seven trained resolutions
(``draw_at_any_size`` lifts that for previews at the training size)."""

from typing import Any

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

# The transformer's Linear layers by the names diffusers and the original code (ComfyUI's ``comfy/ldm/kandinsky5``,
# the Kandinsky-5 repository) share: the attention is ``to_query``/``to_key``/``to_value``/``out_layer``.
ATTENTION = ("to_query", "to_key", "to_value", "out_layer")

FAMILY = Family(
    name="kandinsky5",
    display_name="Kandinsky 5 Image",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_kandinsky5:Kandinsky5Engine",
    denoiser="transformer",
    pipeline_class="Kandinsky5T2IPipeline",
    pipeline_setup="trainer.families.kandinsky5:draw_at_any_size",
    # encode_prompt encodes one side: (Qwen embeddings, CLIP pooled, cumulative lengths); the negative by a second call.
    prompt_outputs=("prompt_embeds_qwen", "prompt_embeds_clip", "prompt_cu_seqlens"),
    negative_outputs=("negative_prompt_embeds_qwen", "negative_prompt_embeds_clip", "negative_prompt_cu_seqlens"),
    negative_prompt="",  # what the pipeline guides with when none is given
    sample_defaults={"guidance_scale": 3.5, "inference_steps": 50},  # the pipeline's defaults (the sft model)
    # Both attentions' projections; the output by its parent's name (a bare "out_layer" is also the final layer's
    # container, which peft refuses).
    lora_target_modules=("to_query", "to_key", "to_value", "self_attention.out_layer", "cross_attention.out_layer"),
    text_encoders=(
        # Qwen2.5's byte-level BPE is Qwen3's (the shipped files); the folder's Qwen2VLProcessor needs torchvision
        # for its video half, so Kamaal reads the folder's tokenizer files alone (``tokenizer_class``): the pipeline
        # calls the processor on text only.  No loader applies a LoRA to it.
        TextEncoder("text_encoder", "Qwen2_5_VLForConditionalGeneration", open_clip=False, tokenizer_kind="qwen3",
                    single_file_prefix="", label="Qwen2.5-VL text encoder", lora=False,
                    blocks=("model.language_model.layers", "model.visual.blocks"),
                    tokenizer_class="Qwen2Tokenizer"),
        # CLIP ViT-L's pooled output joins the time embedding; diffusers' Kandinsky LoRA loader takes the
        # transformer's adapters only.
        TextEncoder("text_encoder_2", "CLIPTextModel", open_clip=False, single_file_prefix="",
                    label="CLIP text encoder", lora=False),
    ),
    # Logit-normal σ shifted by 5: the static shift of the published folder's FlowMatchEulerDiscreteScheduler, which
    # the previews sample with, and musubi-tuner's (blissful-tuner's) Kandinsky 5 example (--discrete_flow_shift 5.0).
    flow=FlowFacts(sampling="logit_normal", shift=5.0),
    sample_scheduler=None,
    max_sequence_length=512,  # the pipeline's default, after the system prompt's 40 tokens
    # ComfyUI's kandinsky5lite_t2i.safetensors (the original names, which are diffusers') with qwen_2.5_vl_7b, clip_l
    # and Flux's ae beside it: models/kandinsky5_single reads them; a full/frozen run's transformer is written so.
    single_file=False,
    single_file_writer="trainer.families.kandinsky5:pipeline_to_original",
    single_file_reader="trainer.models.kandinsky5_single:load_kandinsky5_single_file",
    config_folders={"flow_matching": "kandinsky5-t2i-lite"},
    file_markers=("visual_transformer_blocks.0.visual_modulation.",),
    blocks=("text_transformer_blocks", "visual_transformer_blocks"),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/kandinsky5-t2i-lite: the transformer, Qwen2.5-VL-7B
        # with its vision tower and LM head (loaded whole by the pipeline), CLIP ViT-L's text model, Flux's VAE.
        reference_parameters={"transformer": 6_022_080_576, "text_encoder": 8_292_166_656,
                              "text_encoder_2": 123_060_480, "vae": 83_819_683},
        # Per four of the default targets (the estimate scales by the targets' count): q/k/v/out of both attentions
        # of 52 blocks 2560 wide, 2,088,960 per rank for the five names.
        lora_per_rank=1_671_168, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens through 50 visual blocks 2560 wide with cross-attention to the prompt (Qwen-Image:
        # 60 double-stream blocks 3072 wide, 28 GB), scaled by blocks × width.
        activation_bytes_per_latent_pixel=19.5 * GB / 128**2,
        quantizable_share=0.997, block_count=52, text_quantizable_share=0.834),
    # The original module names are diffusers' (ComfyUI's Kandinsky 5 model keeps them), so the kohya-style file is
    # ``lora_unet_`` + the module path with "_" for ".", which ComfyUI maps onto every weight of its model;
    # musubi-tuner (blissful-tuner) trains Kandinsky 5 LoRAs as networks.lora_kandinsky.
    kohya=KohyaFacts(modelspec_architecture="kandinsky-5-image/lora", base_model_version="kandinsky5_image",
                     lora_family="kandinsky5_image", lora_family_label="Kandinsky 5 Image",
                     original_unet_names=False, network_module="networks.lora_kandinsky",
                     transformer_layout="trainer.families.kandinsky5:original_layout"),
    tiny={"denoiser": ("Kandinsky5Transformer3DModel", {
              "in_visual_dim": 4, "out_visual_dim": 4, "in_text_dim": 32, "in_text_dim2": 32, "time_dim": 32,
              "patch_size": (1, 2, 2), "model_dim": 32, "ff_dim": 64, "num_text_blocks": 1, "num_visual_blocks": 2,
              "axes_dims": (4, 6, 6)}),
          # zeros from its constructor (adaLN-Zero), drawn for the tiny model
          "zero_initialised": (("modulation",), 0.1),
          # Flux's VAE: its shift_factor is there, and the pipeline ignores it (so must the engine)
          "vae": {"shift_factor": 0.1159, "scaling_factor": 0.3611, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          "encoders": [("Qwen2_5_VLForConditionalGeneration", 32, "silu"), ("CLIPTextModel", 32, "quick_gelu")],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 5.0, "use_dynamic_shifting": False})},
)


class EverySize(list):
    """A resolution list that holds every (width, height): the pipeline then draws at the size it is asked for."""

    def __contains__(self, size: object) -> bool:
        return True


def draw_at_any_size(pipeline: object) -> None:
    """``Kandinsky5T2IPipeline`` replaces a size outside its seven trained resolutions (1024², 640×1408 …) by the one
    of the nearest aspect ratio; Kamaal's previews show the model at the size it trains (its buckets), as every other
    family's do."""
    pipeline.resolutions = EverySize()  # type: ignore[attr-defined]


def pipeline_to_original(pipeline: Any) -> dict[str, Any]:
    """A full or frozen run's transformer as one file: diffusers' keys, which are the original code's names
    (``comfy/ldm/kandinsky5/model.py`` builds its modules under the same ones)."""
    return dict(pipeline.transformer.state_dict())


def original_layout(config: dict) -> dict[str, tuple[str, int, int, int, bool]]:
    """Where each Linear of diffusers' Kandinsky 5 transformer sits in the original layout (as ``flux.bfl_layout``:
    diffusers path → (original path, first row, rows, the layer's rows, halves swapped)): the same path, whole —
    diffusers kept the Kandinsky-5 repository's module names, and ComfyUI's model uses them too."""
    paths = ["text_embeddings.in_layer", "pooled_text_embeddings.in_layer", "visual_embeddings.in_layer",
             "time_embeddings.in_layer", "time_embeddings.out_layer", "out_layer.modulation.out_layer",
             "out_layer.out_layer"]
    for i in range(int(config["num_text_blocks"])):
        block = f"text_transformer_blocks.{i}"
        paths += [f"{block}.text_modulation.out_layer", f"{block}.feed_forward.in_layer",
                  f"{block}.feed_forward.out_layer", *(f"{block}.self_attention.{name}" for name in ATTENTION)]
    for i in range(int(config["num_visual_blocks"])):
        block = f"visual_transformer_blocks.{i}"
        paths += [f"{block}.visual_modulation.out_layer", f"{block}.feed_forward.in_layer",
                  f"{block}.feed_forward.out_layer",
                  *(f"{block}.{attention}.{name}" for attention in ("self_attention", "cross_attention")
                    for name in ATTENTION)]
    return {path: (path, 0, 0, 0, False) for path in paths}
