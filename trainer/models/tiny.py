"""A tiny Stable Diffusion (1.x, 2.x or SDXL shaped), deterministic from a seed, for tests and demos.

Real component classes, real CLIP tokenizer (only its first merges, so the embedding stays small),
real key layout; only the widths are small.  The VAE keeps four levels so latents are 1/8 of the image
side, as in the real models, and a 64 px image samples in well under a second on a CPU.

``kamaal-train tiny-model OUT_DIR --arch sd15|sdxl`` writes one with ``build_tiny_model``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from trainer import families
from trainer.models.clip_vocab import (
    END_TOKEN,
    OPEN_CLIP_PAD_TOKEN,
    qwen3_tokenizer,
    t5_tokenizer,
    write_tiny_tokenizer,
)
from trainer.models.folder_dtypes import save_diffusers_folder
from trainer.models.info import Architecture

# Every diffusion family declares its tiny model (``Family.tiny``): UNet extras, text encoders as
# (class name, hidden width, activation), prediction type.
TINY_ARCHITECTURES: tuple[Architecture, ...] = families.TINY_FAMILIES
TINY_MERGES = 500  # → 1014 tokens; common English words still come out whole
TINY_IMAGE_SIZE = 64

_SCHEDULER: dict[str, Any] = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                              "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False,
                              "steps_offset": 1, "timestep_spacing": "leading"}
_VAE: dict[str, Any] = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
                        "block_out_channels": (8, 16, 16, 16), "norm_num_groups": 8,
                        "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
                        "sample_size": TINY_IMAGE_SIZE}
_UNET: dict[str, Any] = {"sample_size": TINY_IMAGE_SIZE // 8, "in_channels": 4, "out_channels": 4,
                         "layers_per_block": 2, "block_out_channels": (32, 64), "norm_num_groups": 32}

def _text_encoder(class_name: str, width: int, activation: str, vocab_size: int, pad_id: int,
                  positions: int = 77) -> torch.nn.Module:
    import transformers

    config = transformers.CLIPTextConfig(
        hidden_size=width, intermediate_size=2 * width, num_attention_heads=4, num_hidden_layers=2,
        hidden_act=activation, projection_dim=32, vocab_size=vocab_size, max_position_embeddings=positions,
        # CLIP pools at the first end-of-text token; its id must be the tokenizer's.
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=pad_id)
    return getattr(transformers, class_name)(config)


def tiny_components(arch: Architecture, seed: int, tokenizer_root: Path) -> dict[str, Any]:
    """The pipeline's components, freshly initialised; weights depend only on ``arch`` and ``seed``."""
    import diffusers
    from transformers import CLIPTokenizer

    family = families.family(arch)
    spec = family.tiny
    components: dict[str, Any] = {}
    # fork_rng: seeding must not disturb the caller's random state (the training loop's, say).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if "denoiser" in spec:  # a transformer family: its class and tiny config
            class_name, config = spec["denoiser"]
            components[family.denoiser] = getattr(diffusers, class_name)(**config)
            _draw_zero_initialised(components[family.denoiser], *spec.get("zero_initialised", ((), 0.0)))
            for offset, name in enumerate(spec.get("frozen", ()), start=1):  # sampling-only denoisers, same shape
                torch.manual_seed(seed + 100 * offset)
                components[name] = getattr(diffusers, class_name)(**config)
        else:
            components["unet"] = diffusers.UNet2DConditionModel(**_UNET, **spec["unet"])
        torch.manual_seed(seed + 1)
        if "vae_class" in spec:  # another autoencoder (Qwen-Image's video VAE): its tiny config whole
            components["vae"] = getattr(diffusers, spec["vae_class"])(**spec["vae"])
        else:
            components["vae"] = diffusers.AutoencoderKL(**(_VAE | spec.get("vae", {})))
        encoders = zip(family.text_encoders, spec["encoders"], strict=True)
        for index, (encoder, (class_name, width, activation, *depth)) in enumerate(encoders):
            folder = tokenizer_root / encoder.tokenizer
            torch.manual_seed(seed + 2 + index)
            if encoder.tokenizer_kind == "t5":
                tokenizer = t5_tokenizer()
                components[encoder.component] = _t5_encoder(width, activation, len(tokenizer))
            elif encoder.tokenizer_kind == "qwen3":
                tokenizer = qwen3_tokenizer()
                if encoder.chat_template is not None:  # the real model's tokenizer renders its turns another way
                    tokenizer.chat_template = encoder.chat_template
                components[encoder.component] = _qwen_encoder(class_name, width, activation, len(tokenizer),
                                                               tokenizer.pad_token_id, *depth)
            elif encoder.tokenizer_kind == "mistral":
                tokenizer = tiny_mistral_tokenizer()
                components[encoder.component] = _mistral3_encoder(width, activation, tokenizer, *depth)
            elif encoder.tokenizer_kind == "gemma":
                tokenizer = tiny_gemma_tokenizer()
                components[encoder.component] = _gemma_encoder(width, activation, len(tokenizer),
                                                               tokenizer.pad_token_id)
            elif encoder.tokenizer_kind == "tekken":
                tokenizer = tiny_tekken_tokenizer()
                components[encoder.component] = _ministral3_encoder(width, activation, len(tokenizer), *depth)
            elif encoder.tokenizer_kind == "llama":  # Llama 3's vocabulary is not shipped: the tiny Gemma one's
                tokenizer = tiny_gemma_tokenizer()
                components[encoder.component] = _llama_encoder(width, activation, len(tokenizer), *depth)
            else:
                pad = OPEN_CLIP_PAD_TOKEN if encoder.open_clip else END_TOKEN
                vocab_size = write_tiny_tokenizer(folder, merge_count=TINY_MERGES, pad_token=pad)
                tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
                components[encoder.component] = _text_encoder(
                    class_name, width, activation, vocab_size, tokenizer.pad_token_id, spec.get("clip_positions", 77))
            if "processor" in spec:  # the pipeline reads prompts through a processor made from the tokenizer
                import importlib

                module_name, function_name = spec["processor"].split(":")
                tokenizer = getattr(importlib.import_module(module_name), function_name)(tokenizer)
            components[encoder.tokenizer] = tokenizer
    if "scheduler" in spec:
        class_name, config = spec["scheduler"]
        components["scheduler"] = getattr(diffusers, class_name)(**config)
    else:
        components["scheduler"] = diffusers.DDIMScheduler(**_SCHEDULER, prediction_type=spec["prediction_type"])
    return components


def _t5_encoder(width: int, activation: str, vocab_size: int) -> torch.nn.Module:
    """A small T5 v1.1-style encoder (gated GELU, as T5-XXL), over the whole shipped vocabulary."""
    import transformers

    config = transformers.T5Config(vocab_size=vocab_size, d_model=width, d_kv=width // 4, d_ff=2 * width,
                                   num_layers=2, num_heads=4, feed_forward_proj=f"gated-{activation}",
                                   relative_attention_num_buckets=8, is_encoder_decoder=False, use_cache=False)
    return transformers.T5EncoderModel(config)


def _qwen_encoder(class_name: str, width: int, activation: str, vocab_size: int, pad_id: int,
                  layers: int = 3) -> torch.nn.Module:
    """A small Qwen language model over the whole shipped vocabulary: Qwen3 (grouped-query attention, q/k norms,
    SwiGLU, as Qwen3-4B; three layers, so the penultimate hidden state Z-Image reads is a layer's output; as many as
    the family reads from — Flux.2 klein's 27th — and with its LM head where the pipeline takes the causal LM), or
    Qwen2.5-VL (Qwen-Image's encoder: the same text stack with multimodal rotary sections, and a two-block vision
    tower it does not use for text), or Qwen3-VL (Qwen-Image 2.1's, Krea 2's and Ideogram 4's: Qwen3's text stack
    with interleaved multimodal rotary sections and a one-block vision tower, as many layers as the pipeline's taps
    reach)."""
    import transformers

    text = {"vocab_size": vocab_size, "hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": layers,
            "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": activation,
            "max_position_embeddings": 1024, "pad_token_id": pad_id, "use_cache": False}
    if class_name in ("Qwen3Model", "Qwen3ForCausalLM"):
        config = transformers.Qwen3Config(**text, head_dim=width // 4, tie_word_embeddings=True)
        return getattr(transformers, class_name)(config)
    if class_name in ("Qwen3VLModel", "Qwen3VLForConditionalGeneration"):
        half = width // 8  # rotary pairs per head (head_dim = width / 4): the three sections share them
        config = transformers.Qwen3VLConfig(
            text_config={**text, "head_dim": width // 4, "rope_parameters": {
                "rope_type": "default", "rope_theta": 5000000.0,
                "mrope_section": [half - 2 * (width // 32), width // 32, width // 32], "mrope_interleaved": True}},
            vision_config={"depth": 1, "hidden_size": width, "intermediate_size": width, "num_heads": 2,
                           "out_hidden_size": width, "deepstack_visual_indexes": [], "num_position_embeddings": 16,
                           "patch_size": 2})
        return getattr(transformers, class_name)(config)
    config = transformers.Qwen2_5_VLConfig(
        text_config={**text, "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": width, "intermediate_size": width, "num_heads": 2,
                       "out_hidden_size": width},
        vocab_size=vocab_size, vision_start_token_id=151652, vision_end_token_id=151653, vision_token_id=151654,
        image_token_id=151655, video_token_id=151656)
    return getattr(transformers, class_name)(config)


# Words the tiny Gemma tokenizer keeps whole: Lumina 2's system prompt and the shapes world's captions.  Anything
# else falls back to single characters and bytes, as Gemma's own tokenizer does for what it has no piece for.
_GEMMA_WORDS = ("You are an assistant designed to generate superior images with the degree of image-text alignment "
                "based on textual prompts or user <Prompt Start> a photo of sks small large red green blue yellow "
                "orange purple teal pink white gray black circle square triangle star cross diamond background "
                "drawn page").split()


def tiny_gemma_tokenizer() -> Any:
    """A genuine Gemma tokenizer (transformers' ``GemmaTokenizer``: byte-fallback BPE on "▁"-joined words, Gemma's
    special tokens at Gemma's ids) over a tiny vocabulary: every byte, single characters, and the words above built
    up one character at a time.  Gemma's own 256,000-piece vocabulary is not shipped (a Lumina 2 folder brings it)."""
    import string

    from transformers import GemmaTokenizer

    vocab = {token: index for index, token in enumerate(("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"))}
    vocab |= {f"<0x{byte:02X}>": len(vocab) + byte for byte in range(256)}
    for character in "▁" + string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(character, len(vocab))
    merges = []
    for word in _GEMMA_WORDS:
        pieces = "▁" + word
        for end in range(2, len(pieces) + 1):
            if pieces[:end] not in vocab:
                vocab[pieces[:end]] = len(vocab)
                merges.append((pieces[:end - 1], pieces[end - 1]))
    return GemmaTokenizer(vocab=vocab, merges=merges)


def _gemma_encoder(width: int, activation: str, vocab_size: int, pad_id: int) -> torch.nn.Module:
    """A small Gemma 2 (grouped-query attention, soft-capped logits, sandwich norms, as Gemma-2-2B; three layers, so
    the penultimate hidden state Lumina 2 reads is a layer's output)."""
    import transformers

    config = transformers.Gemma2Config(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=width // 4, hidden_activation=activation,
        max_position_embeddings=512, query_pre_attn_scalar=width // 4, pad_token_id=pad_id, use_cache=False)
    return transformers.Gemma2Model(config)


# Mistral's control tokens the chat template and the processor name (the real Tekken vocabulary has 1,000 of them
# before its byte-level BPE, at other ids).
_MISTRAL_SPECIALS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<pad>", "[IMG]", "[IMG_BREAK]", "[IMG_END]",
                     "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
# Mistral Small 3's chat layout for text turns: <s>[SYSTEM_PROMPT]…[/SYSTEM_PROMPT][INST]…[/INST] — content given
# as a string or as a list of {"type": "text"} parts, as Flux2Pipeline's format_input gives it.
_MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}{% else %}"
    "{% set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') %}"
    "{% endif %}"
    "{% if message['role'] == 'system' %}{{ '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST]' + text + '[/INST]' }}"
    "{% else %}{{ text + eos_token }}{% endif %}{% endfor %}")


def tiny_mistral_tokenizer() -> Any:
    """A byte-level BPE tokenizer in the shape of Mistral's Tekken (its control tokens, then the 256 bytes; no
    merges, so every byte is a token) with Mistral Small 3's chat layout: what ``Flux2Pipeline`` calls
    (``apply_chat_template`` with padding to 512).  The real vocabulary comes with a Flux.2 dev folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(_MISTRAL_SPECIALS)}
    for character in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[character] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(_MISTRAL_SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", chat_template=_MISTRAL_CHAT_TEMPLATE)


def _mistral3_encoder(width: int, activation: str, tokenizer: Any, layers: int = 30) -> torch.nn.Module:
    """A small Mistral 3 (``Mistral3ForConditionalGeneration``, Flux.2 dev's class: a Mistral language model with
    grouped-query attention, a one-layer Pixtral vision tower and its projector, which text never reaches), as many
    layers as the family reads from (Flux.2 dev's 30th)."""
    import transformers

    config = transformers.Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": width,
                     "intermediate_size": 2 * width, "num_hidden_layers": layers, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "head_dim": width // 4, "hidden_act": activation,
                     "max_position_embeddings": 1024, "pad_token_id": tokenizer.pad_token_id, "use_cache": False},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "head_dim": 8, "patch_size": 4, "image_size": 32},
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2)
    return transformers.Mistral3ForConditionalGeneration(config)


def _draw_zero_initialised(denoiser: torch.nn.Module, fragments: tuple[str, ...], std: float) -> None:
    """Give the layers whose names hold one of ``fragments`` (a DiT's zero-initialised modulation and output layer:
    adaLN-Zero) random weights of ``std``, as a trained model has: at zero they gate every block shut and block every
    gradient to the blocks before them, so no LoRA could learn."""
    for name, parameter in denoiser.named_parameters():
        if any(fragment in name for fragment in fragments):
            torch.nn.init.normal_(parameter, std=std)


# Mistral's special tokens at their ids in Tekken's vocabulary (<unk>, <s>, </s>, ..., [IMG] 10, <pad> 11): the ids
# Ministral 3's config names (bos 1, eos 2, pad 11, image 10).
_TEKKEN_SPECIALS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>")


def tiny_tekken_tokenizer() -> Any:
    """A fast tokenizer shaped as Mistral's Tekken is in a diffusers folder (``tokenizer.json``: byte-level BPE, the
    prompt after ``<s>``, Mistral's special tokens at their ids) over a tiny vocabulary: every byte, and the
    words of the shapes world's captions built up one character at a time.  Tekken's own 131,072 pieces are not
    shipped (an ERNIE-Image folder brings them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(_TEKKEN_SPECIALS)}
    for symbol in pre_tokenizers.ByteLevel.alphabet():
        vocab.setdefault(symbol, len(vocab))
    merges = []
    for word in _GEMMA_WORDS:
        pieces = "Ġ" + word
        for end in range(2, len(pieces) + 1):
            if pieces[:end] not in vocab:
                vocab[pieces[:end]] = len(vocab)
                merges.append((pieces[:end - 1], pieces[end - 1]))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                           special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_max_length=512)


def _ministral3_encoder(width: int, activation: str, vocab_size: int, layers: int = 3) -> torch.nn.Module:
    """A small ``Mistral3Model`` as ERNIE-Image's text encoder is built: Ministral 3's text stack (grouped-query
    attention, YaRN rotary positions, tied embeddings) and a one-layer Pixtral vision tower that text never uses."""
    import transformers

    text = {"model_type": "ministral3", "vocab_size": vocab_size, "hidden_size": width, "intermediate_size": 2 * width,
            "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "hidden_act": activation, "max_position_embeddings": 262144, "bos_token_id": 1, "eos_token_id": 2,
            "pad_token_id": 11, "tie_word_embeddings": True, "use_cache": False,
            "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 16.0,
                                "original_max_position_embeddings": 16384, "beta_fast": 32.0, "beta_slow": 1.0,
                                "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.1}}
    vision = {"model_type": "pixtral", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "head_dim": 8, "image_size": 64, "patch_size": 16}
    config = transformers.Mistral3Config(text_config=text, vision_config=vision, image_token_index=10,
                                         spatial_merge_size=2, projector_hidden_act="gelu",
                                         multimodal_projector_bias=False)
    return transformers.Mistral3Model(config)


def _llama_encoder(width: int, activation: str, vocab_size: int, layers: int) -> torch.nn.Module:
    """A small Llama causal LM (grouped-query attention, SwiGLU, as Llama-3.1-8B), as deep as the blocks of the
    transformer that read one hidden state each (HiDream)."""
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, hidden_act=activation, max_position_embeddings=512,
        tie_word_embeddings=True, use_cache=False)
    return transformers.LlamaForCausalLM(config)


def tiny_pipeline(arch: Architecture, seed: int = 0) -> Any:
    """A tiny pipeline in memory (not saved)."""
    import diffusers

    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"tiny model arch must be one of {', '.join(TINY_ARCHITECTURES)}, got {arch!r}")
    with tempfile.TemporaryDirectory(prefix="kamaal-tiny-tokenizer-") as scratch:
        components = tiny_components(arch, seed, Path(scratch))
    family = families.family(arch)
    return getattr(diffusers, family.pipeline_class)(**components, **family.pipeline_args)


def build_tiny_model(out_dir: Path | str, arch: Architecture, seed: int = 0) -> Path:
    """Write a tiny diffusers model folder that ``StableDiffusion(XL)Pipeline.from_pretrained`` loads offline."""
    out = Path(out_dir)
    pipeline = tiny_pipeline(arch, seed)
    out.mkdir(parents=True, exist_ok=True)
    save_diffusers_folder(pipeline, out)
    return out


def write_tiny_config_dir(model_dir: Path, out_dir: Path) -> Path:
    """The config half of a tiny model (JSON configs and tokenizers, no weights): the ``config_dir``
    a tiny single-file checkpoint is loaded with, as ``resources/model_configs/*`` is for real ones."""
    import shutil

    shutil.copytree(model_dir, out_dir, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"), dirs_exist_ok=True)
    return out_dir
