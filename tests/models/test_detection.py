"""Architecture and prediction-type detection from key names and shapes alone (no weights needed)."""

from __future__ import annotations

import pytest
import torch

from trainer.errors import InputError
from trainer.models.detect import V_PRED_STAT_KEY, detect_architecture, detect_prediction_type

U = "model.diffusion_model."


def unet_keys(width: int, in_channels: int = 4) -> dict[str, tuple[int, ...]]:
    return {U + "input_blocks.0.0.weight": (320, in_channels, 3, 3),
            U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, width),
            U + "output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
            "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}


SD15 = {**unet_keys(768), "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768)}
SD2 = {**unet_keys(1024), "cond_stage_model.model.token_embedding.weight": (49408, 1024),
       "cond_stage_model.model.positional_embedding": (77, 1024)}
SDXL = {**unet_keys(2048), U + "label_emb.0.0.weight": (1280, 2816),
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
        "conditioner.embedders.1.model.positional_embedding": (77, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)}


@pytest.mark.parametrize(("shapes", "expected"), [(SD15, "sd15"), (SD2, "sd2"), (SDXL, "sdxl")])
def test_real_size_key_sets(shapes, expected):
    assert detect_architecture(shapes, "x.safetensors") == expected


def test_cross_attention_width_alone_decides_when_the_text_encoder_is_absent():
    assert detect_architecture(unet_keys(768), "u.safetensors") == "sd15"
    assert detect_architecture(unet_keys(1024), "u.safetensors") == "sd2"


def test_non_standard_width_falls_back_to_the_text_encoder_layout():
    tiny_sd2 = {**unet_keys(32), "cond_stage_model.model.token_embedding.weight": (1014, 32)}
    assert detect_architecture(tiny_sd2, "t.safetensors") == "sd2"


@pytest.mark.parametrize(("shapes", "message"), [
    (unet_keys(512), "unrecognised architecture"),
    (unet_keys(768, in_channels=9), "inpainting"),
    ({**unet_keys(1280), "conditioner.embedders.0.model.positional_embedding": (77, 1280)}, "SDXL refiner"),
    ({**unet_keys(768), "cond_stage_model.model.token_embedding.weight": (49408, 1024)}, "mixes parts"),
    ({"encoder.conv_in.weight": (1,), "decoder.conv_in.weight": (1,)}, "VAE only"),
])
def test_unsupported_or_odd_files_are_refused_by_name(shapes, message):
    with pytest.raises(InputError, match=rf"model.path: odd.safetensors .*{message}"):
        detect_architecture(shapes, "odd.safetensors")


def test_sd2_v_prediction_heuristic_and_its_precedence():
    def reader(std: float):
        bias = torch.randn(1280, generator=torch.Generator().manual_seed(0))
        bias = bias / bias.std(unbiased=False) * std
        return lambda key: bias if key == V_PRED_STAT_KEY else None

    shapes = {**SD2, V_PRED_STAT_KEY: (1280,)}
    assert detect_prediction_type("sd2", shapes, {}, reader(0.2)) == "v_prediction"
    assert detect_prediction_type("sd2", shapes, {}, reader(0.02)) == "epsilon"
    # The statistic only applies to SD 2.x; SD 1.x/SDXL base default to epsilon.
    assert detect_prediction_type("sd15", shapes, {}, reader(0.2)) == "epsilon"
    # Metadata beats the statistic; the caller's override beats everything.
    assert detect_prediction_type("sd2", shapes, {"modelspec.prediction_type": "epsilon"}, reader(0.2)) == "epsilon"
    assert detect_prediction_type("sdxl", {**SDXL, "v_pred": ()}, {}, reader(0.0)) == "v_prediction"
    assert detect_prediction_type("sd2", shapes, {}, reader(0.2), override="epsilon") == "epsilon"
    with pytest.raises(InputError, match=r"model\.prediction_type must be one of"):
        detect_prediction_type("sd2", shapes, {}, reader(0.2), override="sample")  # type: ignore[arg-type]
