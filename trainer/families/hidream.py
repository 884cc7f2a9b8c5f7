"""HiDream-I1 (HiDream.ai, 17 B): a mixture-of-experts DiT — 16 double-stream then 32 single-stream blocks 2560 wide,
each feed-forward a shared SwiGLU expert plus 2 of 4 routed ones picked per token by a softmax gate — on 2×2 patches of
Flux.1's VAE latents, conditioned on four text encoders: the pooled projections of two long CLIPs (L and G, 248
positions, side by side: 2048 wide) with the time, T5-XXL's last hidden state and the hidden state of *every* layer of
Llama-3.1-8B-Instruct (block i reads layer ``llama_layers[i]``), each prompt padded to 128 tokens.

Its conventions (``HiDreamImagePipeline``): the time is σ·1000 and the transformer predicts x₀ − ε (the pipeline
negates it), so the engine turns the sign round and the loss is SD 3's.  In training mode diffusers' MoE takes its
training path (every token through its two experts, with gradients; the output comes back patch by patch), which
the engine unpacks; the gate's auxiliary load-balancing loss is computed there but dropped (diffusers' own line that
would add it is commented out).  diffusers' HiDream LoRA example loads the transformer with
``force_inference_output=True`` instead — no auxiliary loss either, but its experts then run under ``torch.no_grad``
(``moe_infer``), so no gradient passes back through them; the training path has no such gap.  The gate is frozen
under LoRA, so Kamaal adds no balancing loss.

Three models share the architecture: Full (guidance 5, ~50 steps, scheduler shift 3), Dev (distilled: guidance 0,
28 steps, shift 6) and Fast (guidance 0, 16 steps, shift 3).  Kamaal trains all three with Full's shift-3 schedule
(as diffusers' HiDream LoRA example does); Dev and Fast sample with guidance 0 (set ``sampling.guidance_scale`` to 0
for them: nothing in a folder tells them apart but the scheduler's shift).  The Llama tokenizer is not shippable
(Meta's licence): a diffusers folder brings its own ``tokenizer_4`` with ``text_encoder_4``; ComfyUI's single files
take ComfyUI's own copy (``hidream_single``).
"""

from trainer.families.base import GB, Family, FlowFacts, KohyaFacts, MemoryFacts, TextEncoder

# The attention projections of both streams: its default LoRA targets (the config's default names ``to_out.0``, which
# HiDream's attention — ``to_out`` a plain Linear — does not have).  As diffusers' train_dreambooth_lora_hidream.py
# (``to_k``, ``to_q``, ``to_v``, ``to_out``) plus the text stream's.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out", "to_q_t", "to_k_t", "to_v_t", "to_out_t")

FAMILY = Family(
    name="hidream",
    display_name="HiDream-I1",
    generation="Transformers with an LLM (2025–26)",
    modes=("frozen", "lora", "dreambooth"),
    kind="transformer",
    engine="trainer.diffusion.engine_hidream:HiDreamEngine",
    denoiser="transformer",
    pipeline_class="HiDreamImagePipeline",
    pipeline_setup="trainer.diffusion.engine_hidream:draw_at_the_transformers_area",
    prompt_outputs=("prompt_embeds_t5", "negative_prompt_embeds_t5", "prompt_embeds_llama3",
                    "negative_prompt_embeds_llama3", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"),
    sample_defaults={"guidance_scale": 5.0, "inference_steps": 50},  # Full's; Dev and Fast: guidance 0
    text_encoders=(
        # No loader applies a LoRA to any of them: HiDreamImageLoraLoaderMixin loads the transformer's only.
        TextEncoder("text_encoder", "CLIPTextModelWithProjection", open_clip=False, single_file_prefix="",
                    label="CLIP-L text encoder", lora=False),
        TextEncoder("text_encoder_2", "CLIPTextModelWithProjection", open_clip=True, single_file_prefix="",
                    label="CLIP-G text encoder", lora=False),
        TextEncoder("text_encoder_3", "T5EncoderModel", open_clip=False, tokenizer_kind="t5", single_file_prefix="",
                    label="T5 text encoder", lora=False, blocks=("encoder.block",)),
        # Llama 3.1's tokenizer is not shipped: the folder's own tokenizer_4.
        TextEncoder("text_encoder_4", "LlamaForCausalLM", open_clip=False, tokenizer_kind="llama",
                    single_file_prefix="", label="Llama-3.1-8B-Instruct text encoder", lora=False,
                    blocks=("model.layers",)),
    ),
    # Logit-normal σ shifted by 3: HiDream-I1-Full's scheduler shift (static), which diffusers' HiDream LoRA example
    # trains with (its noise scheduler loaded with shift=3.0).
    flow=FlowFacts(sampling="logit_normal", shift=3.0),
    sample_scheduler=None,
    max_sequence_length=128,  # the pipeline's default, for T5 and Llama alike (and CLIP's padding)
    # ComfyUI's hidream_i1_{full,dev,fast}_*.safetensors hold diffusers' own keys (its single-file converter only
    # strips ``model.diffusion_model.``): models/hidream_single reads them with their four text encoder files and
    # Flux's ae, and writes a full/frozen run's transformer so; merges stay with the UNet families.
    single_file=False,
    single_file_writer="trainer.models.hidream_single:pipeline_to_comfy",
    single_file_reader="trainer.models.hidream_single:load_hidream_single_file",
    file_markers=("double_stream_blocks.0.block.adaLN_modulation.1.",),
    config_folders={"flow_matching": "hidream-i1-full"},
    lora_target_modules=LORA_TARGETS,
    blocks=("double_stream_blocks", "single_stream_blocks"),
    memory=MemoryFacts(
        # Counted on the meta device from resources/model_configs/hidream-i1-full: the transformer, CLIP-L and
        # CLIP-G with projections, T5-XXL's encoder, Llama-3.1-8B with its LM head, Flux's VAE.
        reference_parameters={"transformer": 17_105_733_184, "text_encoder": 123_781_632,
                              "text_encoder_2": 694_878_720, "text_encoder_3": 4_762_310_656,
                              "text_encoder_4": 8_030_261_248, "vae": 83_819_683},
        # Per unit of rank for four targets (the estimate scales by the number of targets): half of LORA_TARGETS'
        # count — to_q/k/v/out of both streams in 16 double blocks, of one stream in 32 single blocks, 2560 wide —
        # so that the presets' eight targets count exactly 1,310,720.
        lora_per_rank=655_360, text_lora_per_rank=0,
        # 1024 px: 4096 image tokens and 384 text tokens (T5's, one Llama layer's carried through, the block's own
        # Llama layer) through 48 blocks 2560 wide — Flux.1's 18 GB (57 blocks 3072 wide) scaled by blocks × width
        # is 12.6 GB — and the MoE's training path (each token through two routed experts beside the shared one)
        # adding about a third: an estimate, not measured on a GPU.
        activation_bytes_per_latent_pixel=16 * GB / 128**2,
        quantizable_share=0.968, block_count=48, text_quantizable_share=0.853),
    # ComfyUI's HiDream branch of model_lora_keys_unet maps ``transformer.<its key>`` (SimpleTuner's files) and the
    # generic ``diffusion_model.<key>`` / ``lora_unet_<key>``: its model keeps diffusers' module names, so the
    # diffusers file is the ComfyUI file.  No kohya file of another layout.
    kohya=KohyaFacts(modelspec_architecture="hidream-i1/lora", base_model_version="hidream_i1",
                     lora_family="hidream_i1", lora_family_label="HiDream-I1", original_unet_names=False),
    tiny={"denoiser": ("HiDreamImageTransformer2DModel", {
              "patch_size": 2, "in_channels": 4, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "caption_channels": (32, 32), "text_emb_dim": 64, "num_routed_experts": 4,
              "num_activated_experts": 2, "axes_dims_rope": (8, 4, 4), "max_resolution": (8, 8),
              "llama_layers": (0, 1, 2)}),
          "vae": {"shift_factor": 0.1159, "scaling_factor": 0.3611, "use_quant_conv": False,
                  "use_post_quant_conv": False},
          # Two CLIPs with projections (32 + 32 = text_emb_dim), 128 positions (the pipeline pads CLIP to 128
          # tokens); T5; a three-layer Llama (one hidden state per block).
          "clip_positions": 128,
          "encoders": [("CLIPTextModelWithProjection", 32, "gelu"), ("CLIPTextModelWithProjection", 32, "gelu"),
                       ("T5EncoderModel", 32, "gelu_new"), ("LlamaForCausalLM", 32, "silu", 3)],
          "scheduler": ("FlowMatchEulerDiscreteScheduler", {
              "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False})},
)
