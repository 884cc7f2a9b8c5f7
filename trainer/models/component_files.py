"""A model's parts kept as files of their own, as ComfyUI users keep them (``models/clip``,
``models/text_encoders``, ``models/vae`` beside ``models/checkpoints`` or ``models/unet``): found there, told
apart by their keys and shapes, and loaded exactly into the modules built for them (Flux and SD 3.5 readers).

Text encoder files come in Hugging Face's layout (with or without transformers' old ``text_model.`` level) or,
for CLIP, in OpenCLIP's own (``transformer.resblocks.N.…``, maybe under a prefix); T5 files keep either copy
of their tied embedding.  Every file is read as safetensors (``checkpoint_io``); nothing is unpickled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from trainer.errors import InputError

COMFY_TEXT_FOLDERS = ("clip", "text_encoders")
FILE_SUFFIXES = (".safetensors", ".sft")
T5_TIED = ("encoder.embed_tokens.weight", "shared.weight")
_CLIP_EXTRAS = ("position_ids", "logit_scale")  # buffers and training leftovers no text model needs


def comfy_models_folder(model_path: Path) -> Path:
    """ComfyUI's ``models/`` folder for a file kept in one of its subfolders (``models/checkpoints/x``)."""
    return model_path.resolve().parent.parent


def weight_files(folder: Path) -> list[Path]:
    """The weight files directly in ``folder`` (none if it does not exist), sorted by name."""
    return sorted(p for p in folder.glob("*") if p.suffix in FILE_SUFFIXES and p.is_file())


def prefer_wide(paths: list[Path]) -> Path:
    """Of several files of one encoder, the fp16/fp32 one before an fp8 one (training wants the full weights)."""
    return sorted(paths, key=lambda p: ("fp8" in p.name.lower(), p.name))[0]


def squeezed(name: str) -> str:
    """``name`` in lower case without separators, to match file names however they are spelt (``qwen_2.5_vl``,
    ``Qwen2.5-VL`` → ``qwen25vl``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def one_encoder_companions(model_path: Path, text_encoder_files: list[str], vae_file: str, *, family: str,
                           encoder: str, is_encoder: Callable[[Path], bool],
                           is_vae: Callable[[Path], bool]) -> tuple[Path | None, Path | None]:
    """For a family with one text encoder: its file and the VAE file, as configured, else found by their names in
    ComfyUI's folders beside the transformer's (``models/text_encoders`` — where ComfyUI keeps them now — before
    ``models/clip``; ``models/vae``), the full-width file before an fp8 one.  ``encoder`` describes the file for
    the message when more than one is named ("its Qwen3 file, qwen_3_4b.safetensors")."""
    if len(text_encoder_files) > 1:
        raise InputError(f"model.text_encoder_files: {family} has one text encoder ({encoder}); "
                         f"{len(text_encoder_files)} files are named")
    encoder_path = Path(text_encoder_files[0]) if text_encoder_files else None
    vae = Path(vae_file) if vae_file else None
    models = comfy_models_folder(model_path)
    if encoder_path is None:
        for folder in COMFY_TEXT_FOLDERS[::-1]:
            found = [p for p in weight_files(models / folder) if is_encoder(p)]
            if found:
                encoder_path = prefer_wide(found)
                break
    if vae is None:
        found = [p for p in weight_files(models / "vae") if is_vae(p)]
        vae = prefer_wide(found) if found else None
    return encoder_path, vae


def is_t5(keys: Iterable[str]) -> bool:
    return any(key.startswith(("encoder.block.", "shared.")) for key in keys)


def clip_layout(keys: Iterable[str]) -> tuple[str, str] | None:
    """``("hf" | "open_clip", prefix)`` of a CLIP text encoder's keys, or None when they are not one."""
    for key in keys:
        if key.endswith("transformer.resblocks.0.attn.in_proj_weight"):
            return "open_clip", key.removesuffix("transformer.resblocks.0.attn.in_proj_weight")
        if key.endswith("embeddings.token_embedding.weight"):
            base = key.removesuffix("embeddings.token_embedding.weight")
            return "hf", base.removesuffix("text_model.")
    return None


def clip_shape(shapes: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """(width, layers) of a CLIP text encoder file, from its header (either layout)."""
    width = next((shape[-1] for key, shape in shapes.items() if key.endswith("token_embedding.weight")), 0)
    layers = {int(m[1]) for key in shapes if (m := re.search(r"(?:layers|resblocks)\.(\d+)\.", key))}
    return int(width), len(layers)


def clip_state(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CLIP text encoder's weights (either layout, any prefix) in the key layout of ``model``, a transformers
    CLIP text model: with or without the ``text_model.`` level that transformers 5.6 dropped."""
    from trainer.models.original_layout import open_clip_to_hf

    found = clip_layout(state)
    if found is not None:
        layout, prefix = found
        state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if layout == "open_clip":
            state = open_clip_to_hf(state)
    state = {key: value for key, value in state.items() if not key.endswith(_CLIP_EXTRAS)}
    if any(key.startswith("text_model.") for key in model.state_dict()):
        return {key if key.startswith(("text_model.", "text_projection")) else f"text_model.{key}": value
                for key, value in state.items()}
    return {key.removeprefix("text_model."): value for key, value in state.items()}


def t5_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A T5 encoder's weights with both names of its tied embedding (a file may keep either copy)."""
    state = dict(state)
    for tied, source in (T5_TIED, T5_TIED[::-1]):
        if tied not in state and source in state:
            state[tied] = state[source]
    return state


# ComfyUI's "scaled" fp8 files (``…_fp8_scaled.safetensors``), in two generations.  The older: a ``scaled_fp8``
# marker, and beside each fp8 weight a ``scale_weight`` (its one float32 scale; ComfyUI's ``scaled_fp8_ops`` compute
# with weight × scale_weight) and a ``scale_input`` (for fp8 matrix products; nothing to do with the weight's value).
# The newer (Comfy-Org's files since, Ideogram 4's among them): per quantized layer a ``comfy_quant`` description (UTF-8
# JSON as bytes, ``{"format": "float8_e4m3fn"}``), a ``weight_scale`` and maybe an ``input_scale``.  In its fp8 formats
# the weight_scale is one float32 and the weight is fp8 × weight_scale (ComfyUI's ``TensorCoreFP8Layout.dequantize``);
# its other formats (nvfp4, mxfp8, int8, …) pack the weight with block scales.
SCALED_FP8_MARKER = "scaled_fp8"
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")
_FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_QUANT_PARTS = (".scale_weight", ".scale_input", ".weight_scale", ".input_scale", ".comfy_quant")


def _quant_format(state: dict[str, torch.Tensor], layer: str) -> str | None:
    """The ``format`` a layer's ``comfy_quant`` description names (None without one, "unreadable" if it is no JSON)."""
    import json

    described = state.get(layer + ".comfy_quant")
    if described is None:
        return None
    try:
        return str(json.loads(bytes(described.to(torch.uint8).tolist()).decode("utf-8")).get("format"))
    except (ValueError, AttributeError):
        return "unreadable"


def read_scaled_fp8(state: dict[str, torch.Tensor], path: Path, field: str, plain_file: str,
                    dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A file's tensors with ComfyUI's fp8 weights of one scale each (either generation) turned back into weights
    (fp8 × scale, in ``dtype``), markers, descriptions and input scales dropped; a file of any other kind as it is.
    A layer in another of ComfyUI's quantized formats (nvfp4's block scales, …) is refused by name, pointing at the
    full-precision file."""
    if SCALED_FP8_MARKER not in state and not any(key.endswith(_QUANT_PARTS) for key in state):
        return state
    for marker in (key for key in state if key.endswith((".comfy_quant", ".weight_scale"))):
        layer = marker.rsplit(".", 1)[0]
        kind = _quant_format(state, layer)
        weight, scale = state.get(layer + ".weight"), state.get(layer + ".weight_scale")
        if not (kind in (None, *FP8_FORMATS) and weight is not None and weight.dtype in _FP8_DTYPES
                and scale is not None and scale.numel() == 1):
            what = f"format {kind}" if kind else "its weight is not fp8 with one scale"
            raise InputError(f"{field}: {path} is stored in ComfyUI's quantized format (it holds {marker}), {what}, "
                             f"which Kamaal does not read; use the full-precision file ({plain_file}) or an fp8 one "
                             "with one scale per weight instead")
    weights: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == SCALED_FP8_MARKER or key.endswith(_QUANT_PARTS):
            continue
        layer = key.removesuffix(".weight")
        scale = state.get(layer + ".scale_weight", state.get(layer + ".weight_scale")) if key.endswith(".weight") \
            else None
        weights[key] = (value.to(torch.float32) * scale.to(torch.float32)).to(dtype) if scale is not None else value
    return weights


def load_exact(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str,
               field: str = "model", optional: Iterable[str] = ()) -> None:
    """Fill ``model`` (built on the meta device, or not) in place with ``state``; ``InputError`` naming ``field``
    and the file when a tensor is missing, unknown or of another shape (a file of another model or size)."""
    skip = set(optional)
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - skip)
    unexpected = sorted(set(state) - set(own) - skip)
    wrong = sorted(key for key in set(own) & set(state) if tuple(own[key].shape) != tuple(state[key].shape))
    if missing or unexpected or wrong:
        shown = (missing or unexpected or wrong)[:3]
        kind = "lacks" if missing else "has unknown" if unexpected else "has wrongly shaped"
        detail = ""
        if wrong and not (missing or unexpected):
            key = wrong[0]
            detail = f" ({key}: {tuple(state[key].shape)} in the file, {tuple(own[key].shape)} expected)"
        raise InputError(f"{field}: {path} does not hold a {what} of this shape: it {kind} "
                         f"{', '.join(shown)}{detail}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False, assign=True)


def vae_from_state(state: dict[str, torch.Tensor], folder: Path, source: Path, field: str, problem: str):
    """diffusers' ``AutoencoderKL`` from an original-layout VAE's weights (any ``first_stage_model.`` prefix
    dropped), configured by ``folder/vae``; else ``InputError`` "``field``: ``source`` ``problem``" ("is not a Flux
    VAE", "does not hold an SD 3.5 VAE") with diffusers' reason."""
    import diffusers
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    state = {key.removeprefix("first_stage_model."): value for key, value in state.items()}
    try:
        return diffusers.AutoencoderKL.from_single_file(state, config=str(folder), subfolder="vae",
                                                        local_files_only=True)
    except (ValueError, RuntimeError, KeyError, OSError, SingleFileComponentError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{field}: {source} {problem} ({detail})") from None


def text_tokenizer(folder: Path, class_name: str = "AutoTokenizer"):
    """The text tokenizer in ``folder`` (read as transformers' ``class_name``) with its chat template, where a
    multimodal processor's folder keeps that template in the processor's own ``chat_template.json`` (which a
    tokenizer does not read)."""
    import json

    import transformers

    tokenizer = getattr(transformers, class_name).from_pretrained(folder, local_files_only=True)
    legacy = folder / "chat_template.json"
    if not tokenizer.chat_template and legacy.is_file():
        tokenizer.chat_template = json.loads(legacy.read_text(encoding="utf-8"))["chat_template"]
    return tokenizer


def tokenizer_from(folder: Path, kind: str):
    """The tokenizer in ``folder`` (a config folder may bring its own: the tiny models' do), else the one Kamaal
    ships for ``kind`` ("t5" or "qwen3", as ``TextEncoder.tokenizer_kind`` names them)."""
    if folder.is_dir():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    from trainer.models.clip_vocab import qwen3_tokenizer, t5_tokenizer

    return {"t5": t5_tokenizer, "qwen3": qwen3_tokenizer}[kind]()
