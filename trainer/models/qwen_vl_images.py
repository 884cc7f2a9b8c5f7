"""The ``processor`` of Qwen-Image-Edit's pipeline (Qwen2-VL's: tokenizer, chat text and images) without torchvision.

transformers 5 builds a Qwen-VL processor with its video processor, which needs torchvision (not installed); the
image processor has a Pillow version (``Qwen2VLImageProcessorPil``: the same resizing to multiples of 28 pixels,
normalisation and 14-pixel patches, flattened in 2×2 merges), which is what the edit pipeline's condition image
needs.  So the processor is built without its video half — as the captioners build theirs
(``captioning.models.images_only``) — and with the Pillow image processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

from trainer.captioning.models import images_only

# The tiny model's pixel budget for a condition image: the pipeline hands over 384² pixels, the real processor keeps
# them (≈190 vision tokens); the tiny one shrinks them to at most 4 × 4 patches of 28 pixels (16 vision tokens).
TINY_MAX_PIXELS = 112 * 112


class Qwen2VLImagesProcessor(images_only(Qwen2VLProcessor)):
    """Qwen2-VL's processor for text and images (no video half)."""

    # What a folder Kamaal writes names in ``model_index.json`` (``folder_dtypes.save_diffusers_folder``): the real
    # class, so that diffusers loads the folder without Kamaal wherever torchvision is installed.
    published_as: ClassVar[tuple[str, str]] = ("transformers", "Qwen2VLProcessor")


def tiny_processor(tokenizer: Any) -> Any:
    """The pipeline's processor over ``tokenizer`` (the shipped Qwen3 vocabulary: Qwen-VL's ``<|image_pad|>`` and
    ``<|vision_start|>`` at Qwen2.5-VL's ids), its images at a small pixel budget."""
    images = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=TINY_MAX_PIXELS)
    return Qwen2VLImagesProcessor(image_processor=images, tokenizer=tokenizer)


def pipeline_parts(folder: Path) -> dict[str, Any]:
    """What ``QwenImageEditPlusPipeline.from_pretrained`` is given for a folder: its ``processor/`` read with the
    Pillow image processor (diffusers' own load would build the video half, which needs torchvision)."""
    source = folder / "processor"
    return {"processor": Qwen2VLImagesProcessor.from_pretrained(
        source, local_files_only=True, image_processor=Qwen2VLImageProcessorPil.from_pretrained(
            source, local_files_only=True))}


def load_qwenimageedit_single_file(checkpoint: Any, config_dir: Path | None, dtype: Any,
                                   text_encoder_files: list[str], vae_file: str) -> Any:
    """Qwen-Image-Edit from ComfyUI's files (``qwen_image_edit_2509_bf16.safetensors`` has Qwen-Image's keys and
    shapes, with the same ``qwen_2.5_vl_7b`` and ``qwen_image_vae`` files beside it): read as Qwen-Image and handed to
    ``QwenImageEditPlusPipeline`` with Qwen2-VL's processor over the shipped vocabulary, its image half at
    Qwen2.5-VL's published settings (the Pillow processor's defaults: 14-pixel patches, 2×2 merges, CLIP's mean/std).
    2511's ``zero_cond_t`` is not in the file: set in the transformer's config where the folder read says so."""
    import diffusers

    from trainer.models.qwenimage_single import load_qwenimage_single_file

    pipeline = load_qwenimage_single_file(checkpoint, config_dir, dtype, text_encoder_files, vae_file)
    parts = dict(pipeline.components)
    processor = Qwen2VLImagesProcessor(image_processor=Qwen2VLImageProcessorPil(), tokenizer=parts.pop("tokenizer"))
    return diffusers.QwenImageEditPlusPipeline(**parts, tokenizer=None, processor=processor)
