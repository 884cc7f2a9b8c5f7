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
