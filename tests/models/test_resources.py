"""The shipped CLIP tokenizer and real-size configs: checked against known ids, counts and diffusers' converters."""

from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import infer_diffusers_model_type
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from trainer.models.clip_vocab import CLIP_TOKENIZER_DIR
from trainer.models.detect import detect_architecture
from trainer.models.info import MODEL_CONFIGS
from trainer.models.original_layout import pipeline_to_original


def test_clip_tokenizer_encodes_the_known_ids():
    tokenizer = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR, local_files_only=True)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.pad_token_id == 49407 and tokenizer.model_max_length == 77
    open_clip = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR, local_files_only=True, pad_token="!")
    assert open_clip("a cat", padding="max_length", max_length=6).input_ids == [49406, 320, 2368, 49407, 0, 0]


# Published parameter counts: SD 1.5 UNet 859.5 M, SD 2 865.9 M, SDXL 2567.5 M; VAE 83.7 M; text encoders
# CLIP ViT-L 123.1 M, OpenCLIP ViT-H (23 layers as used) 340.4 M, OpenCLIP bigG with projection 694.7 M.
REAL = [("sd15", "sd15", "v1", 859_520_964, [123_060_480]),
        ("sd2-v", "sd2", "v2", 865_910_724, [340_387_840]),
        ("sd2-base", "sd2", "v2", 865_910_724, [340_387_840]),
        ("sdxl-base", "sdxl", "xl_base", 2_567_463_684, [123_060_480, 694_659_840])]


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "arch", "diffusers_type", "unet_count", "text_counts"), REAL)
def test_real_size_configs_match_published_models(folder, arch, diffusers_type, unet_count, text_counts):
    """Built on the meta device (no memory): sizes match the published models, and the original-layout
    key set we derive from them is what diffusers and our detector recognise as that model."""
    root = MODEL_CONFIGS / folder

    class Parts:
        pass

    parts = Parts()
    with init_empty_weights():
        parts.unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
        parts.vae = AutoencoderKL.from_config(AutoencoderKL.load_config(root / "vae"))
        parts.text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(root / "text_encoder"))
        if arch == "sdxl":
            parts.text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(root / "text_encoder_2"))
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(parts.unet) == unet_count
    assert count(parts.vae) == 83_653_863
    encoders = [parts.text_encoder] + ([parts.text_encoder_2] if arch == "sdxl" else [])
    assert [count(e) for e in encoders] == text_counts
    original = pipeline_to_original(parts, arch)
    assert infer_diffusers_model_type(original) == diffusers_type
    assert detect_architecture({k: tuple(v.shape) for k, v in original.items()}, folder) == arch
    assert all(t.device == torch.device("meta") for t in original.values())
