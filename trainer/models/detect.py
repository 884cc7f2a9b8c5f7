"""Which Stable Diffusion a checkpoint is, from its tensor names and shapes alone.

Rules (single files in the original CompVis/SGM layout):

- SDXL: a second text encoder under ``conditioner.embedders.1.`` (or the UNet's ``label_emb`` for
  its size/crop conditioning).  An SGM file with only ``conditioner.embedders.0.model`` is the SDXL
  refiner, which cannot be a base for LoRA training here.
- SD 1.x vs 2.x: the UNet's cross-attention width (``attn2.to_k`` input dim) is 768 for 1.x (OpenAI
  CLIP ViT-L) and 1024 for 2.x (OpenCLIP ViT-H).  For non-standard widths (tiny test models) the text
  encoder's layout decides: ``cond_stage_model.transformer.`` is OpenAI CLIP, ``cond_stage_model.model.``
  is OpenCLIP.
- Prediction type, first hit wins: the caller's override; ``modelspec.prediction_type`` in the
  safetensors metadata (Stability's model spec, written by kohya's scripts); a ``v_pred`` marker key
  (written by ComfyUI); for SD 2.x only, ComfyUI's weight statistic: the std of
  ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` is above 0.09 in the 768-v models and below it
  in the 512 epsilon ones; otherwise epsilon (SD 1.x and SDXL base are epsilon models).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from trainer import families
from trainer.errors import InputError
from trainer.models.checkpoint_io import Shapes
from trainer.models.info import PREDICTION_TYPES, Architecture, PredictionType

UNET_PREFIX = "model.diffusion_model."
SD2_TEXT_PREFIX = "cond_stage_model.model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
V_PRED_STAT_KEY = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
V_PRED_STD_THRESHOLD = 0.09

# The UNet's cross-attention width of each family's real models (tells SD 1.x from 2.x files).
_CROSS_ATTENTION_WIDTH: dict[int, Architecture] = {
    f.cross_attention_width: f.name for f in families.FAMILIES.values() if f.cross_attention_width}
# The families with micro-conditioning (SDXL): their UNet has a label_emb, their file a second encoder.
_SIZE_CONDITIONED = [f for f in families.FAMILIES.values() if f.size_conditioning]
# The one-encoder families whose single files keep that encoder under a prefix of its own (SD 1.x/2.x); a family
# whose encoder is a file apart (Z-Image's Qwen3) has no prefix, which every key would match.
_ONE_ENCODER = [f for f in families.FAMILIES.values()
                if len(f.text_encoders) == 1 and f.text_encoders[0].single_file_prefix]


def _has_prefix(shapes: Shapes, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in shapes)


def detect_architecture(shapes: Shapes, name: str | Path) -> Architecture:
    """The family of an original-layout checkpoint; ``InputError`` (naming ``name``) if it is none of ours."""
    # Narrower families first: a variant's files hold its parent's markers too (a Chroma file has Flux's
    # double_blocks), and a family sharing another's markers names what its files lack (Lumina 2's are Z-Image's).
    for other in sorted(families.FAMILIES.values(), key=lambda f: f.variant_of is None and not f.file_lacks):
        if (other.file_markers and any(marker in key for key in shapes for marker in other.file_markers)
                and not any(lack in key for key in shapes for lack in other.file_lacks)):
            if other.single_file_reader is not None:
                return other.name
            raise InputError(f"model.path: {name} is {other.a_name} checkpoint; {other.display_name} loads "
                             "from its diffusers folder for now (single files come later), so point model.path at "
                             "the folder")
    if not _has_prefix(shapes, UNET_PREFIX):
        raise InputError(f"model.path: {name} is not a Stable Diffusion checkpoint ({_guess_what_it_is(shapes)})")
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        raise InputError(f"model.path: {name} has a UNet with {conv_in[1]} input channels (an inpainting or "
                         "instruct-pix2pix model); only text-to-image base models are supported")
    if _has_prefix(shapes, "conditioner.embedders.1.") or _has_prefix(shapes, UNET_PREFIX + "label_emb."):
        if _has_prefix(shapes, SD2_TEXT_PREFIX):
            raise InputError(f"model.path: {name} looks like a Stable Diffusion 2 unCLIP model, which is not supported")
        return _SIZE_CONDITIONED[0].name
    if _has_prefix(shapes, "conditioner.embedders.0.model."):
        raise InputError(f"model.path: {name} is an SDXL refiner; use the SDXL base model to train on")
    width = cross_attention_width(shapes)
    by_width = _CROSS_ATTENTION_WIDTH.get(width) if width is not None else None
    by_encoder: Architecture | None = next(
        (f.name for f in _ONE_ENCODER if _has_prefix(shapes, f.text_encoders[0].single_file_prefix)), None)
    if by_width and by_encoder and by_width != by_encoder:
        raise InputError(f"model.path: {name} mixes parts of different models (a {width}-wide UNet with a "
                         f"{by_encoder} text encoder); this architecture is not recognised")
    architecture = by_width or by_encoder
    if architecture is None:
        raise InputError(f"model.path: {name} has an unrecognised architecture (cross-attention width {width}, "
                         "no text encoder); expected Stable Diffusion 1.x, 2.x or SDXL")
    return architecture


def cross_attention_width(shapes: Shapes) -> int | None:
    """The text-embedding width the UNet attends to (input dim of its first ``attn2.to_k``)."""
    for key in sorted(shapes):
        if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight") and len(shapes[key]) == 2:
            return int(shapes[key][-1])  # a weight that is not a matrix says nothing (the load refuses it)
    return None


def _guess_what_it_is(shapes: Shapes) -> str:
    keys = list(shapes)
    if any(k.startswith(("lora_unet_", "lora_te", "unet.")) or ".lora_" in k or "lora_down" in k for k in keys):
        return "it holds LoRA weights, not a base model"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        return "it looks like a single diffusers component, not a full checkpoint; pass the diffusers folder"
    if _has_prefix(shapes, "encoder.") and _has_prefix(shapes, "decoder."):
        return "it looks like a VAE only"
    return "no UNet weights under 'model.diffusion_model.'"


def detect_prediction_type(architecture: Architecture, shapes: Shapes, metadata: dict[str, str],
                           read_tensor: Callable[[str], torch.Tensor | None],
                           override: PredictionType | None = None) -> PredictionType:
    """What the UNet predicts, by the rules in the module docstring."""
    if override is not None:
        return validate_prediction_type(override)
    spec = metadata.get("modelspec.prediction_type", "").strip().lower()
    if spec in ("v", "v_prediction", "v-prediction"):
        return "v_prediction"
    if spec in ("epsilon", "eps"):
        return "epsilon"
    if "v_pred" in shapes:
        return "v_prediction"
    if families.family(architecture).v_prediction_by_weights:
        bias = read_tensor(V_PRED_STAT_KEY)
        if bias is not None and float(torch.std(bias.float(), unbiased=False)) > V_PRED_STD_THRESHOLD:
            return "v_prediction"
    return "epsilon"


def validate_prediction_type(value: str) -> PredictionType:
    if value not in PREDICTION_TYPES:
        raise InputError(f"model.prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {value!r}")
    return value  # type: ignore[return-value]


def detect_diffusers_folder(folder: Path,
                            override: PredictionType | None = None) -> tuple[Architecture, PredictionType]:
    """Architecture and prediction type of a diffusers folder, from its JSON configs only."""
    index = read_json(folder / "model_index.json", folder)
    pipeline = index.get("_class_name", "")
    candidates = families.by_pipeline_class(pipeline)
    if not candidates:
        expected = sorted({f.pipeline_class for f in families.FAMILIES.values() if f.pipeline_class})
        raise InputError(f"model.path: {folder} holds a {pipeline or 'unknown'} pipeline; expected "
                         f"{' or '.join(expected)}")
    unet = read_json(folder / candidates[0].denoiser / "config.json", folder)
    if candidates[0].flow is not None:  # flow matching: what it predicts is the family's, not an option
        if override is not None:
            raise InputError(f"model.prediction_type: {candidates[0].display_name} is trained by flow matching; "
                             "leave it at auto")
        return candidates[0].name, "flow_matching"
    if unet.get("in_channels", 4) != 4:
        raise InputError(f"model.path: {folder} is an inpainting model; only text-to-image models are supported")
    if len(candidates) == 1:
        architecture: Architecture = candidates[0].name
    else:  # one pipeline class, several families (SD 1.x and 2.x): the text encoder decides
        width = unet.get("cross_attention_dim")
        encoder = read_json(folder / "text_encoder" / "config.json", folder)
        # OpenAI CLIP (SD 1.x) uses quick_gelu, OpenCLIP (SD 2.x) plain gelu: decides for tiny widths.
        by_width = _CROSS_ATTENTION_WIDTH.get(width) if isinstance(width, int) else None
        open_clip = encoder.get("hidden_act") != "quick_gelu"
        architecture = by_width or next(f.name for f in candidates if f.text_encoders[0].open_clip == open_clip)
    if override is not None:
        return architecture, validate_prediction_type(override)
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json", folder)
    return architecture, validate_prediction_type(scheduler.get("prediction_type", "epsilon"))


def read_json(path: Path, folder: Path) -> dict:
    """A JSON object from a model folder; ``InputError`` naming the folder if absent or broken."""
    if not path.is_file():
        missing = path.relative_to(folder)
        raise InputError(f"model.path: {folder} is not a complete diffusers model folder (no {missing})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"model.path: {path} is not valid JSON ({error})") from None
    except RecursionError:
        raise InputError(f"model.path: {path} is not valid JSON (nested too deeply)") from None
    except OSError as error:
        raise InputError(f"model.path: {path} cannot be read ({error.strerror or error})") from None
    if not isinstance(data, dict):
        raise InputError(f"model.path: {path} is not a JSON object")
    return data
