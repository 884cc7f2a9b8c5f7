"""LoRA module names on the full-size published models (built on the meta device: no weights, no time):
kohya's SDXL names in the original (SAI) layout and back, and every diffusers key spelling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.lora_names import (
    SDXL_LAYOUT,
    UnetLayout,
    canonical_name,
    diffusers_file_keys,
    is_sai_name,
    kohya_name,
    parse_diffusers_key,
    sai_name,
)

CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "model_configs"


def meta_unet(folder: str):
    import diffusers

    config = diffusers.UNet2DConditionModel.load_config(CONFIGS / folder / "unet")
    with torch.device("meta"):
        return diffusers.UNet2DConditionModel.from_config(config)


@pytest.mark.parametrize("folder", ["sd15", "sdxl-base"])
def test_every_unet_module_has_one_sai_name_that_reads_back(folder):
    """Every weight-bearing UNet module of the published model gets a SAI name of its own, and reading the
    name back gives the module again (what Kamaal's merge room relies on for kohya's SDXL files)."""
    unet = meta_unet(folder)
    layout = UnetLayout.from_config(unet.config)
    modules = [name for name, module in unet.named_modules()
               if name and isinstance(getattr(module, "weight", None), torch.Tensor)]
    names = {}
    for module in modules:
        canonical = kohya_name("unet", module, folder == "sdxl-base")
        sai = sai_name(canonical, layout)
        assert is_sai_name(sai) and canonical_name(sai) == canonical, (module, sai)
        names[sai] = module
    assert len(names) == len(modules)


def test_sdxl_names_are_the_ones_in_kohyas_files():
    """Names as they appear in SDXL LoRAs trained by kohya's sd-scripts (original-layout UNet)."""
    unet = meta_unet("sdxl-base")
    layout = UnetLayout.from_config(unet.config)
    assert layout == SDXL_LAYOUT
    known = {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q":
            "input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2": "input_blocks_8_1_transformer_blocks_9_ff_net_2",
        "mid_block.attentions.0.transformer_blocks.3.attn2.to_out.0":
            "middle_block_1_transformer_blocks_3_attn2_to_out_0",
        "up_blocks.0.attentions.2.proj_out": "output_blocks_2_1_proj_out",
        "up_blocks.1.attentions.1.transformer_blocks.1.ff.net.0.proj":
            "output_blocks_4_1_transformer_blocks_1_ff_net_0_proj",
        "down_blocks.1.resnets.0.conv_shortcut": "input_blocks_4_0_skip_connection",
        "down_blocks.0.resnets.1.conv2": "input_blocks_2_0_out_layers_3",
        "down_blocks.0.resnets.0.time_emb_proj": "input_blocks_1_0_emb_layers_1",
        "down_blocks.0.downsamplers.0.conv": "input_blocks_3_0_op",
        "up_blocks.0.upsamplers.0.conv": "output_blocks_2_2_conv",
        "up_blocks.1.upsamplers.0.conv": "output_blocks_5_2_conv",
        "up_blocks.2.resnets.2.conv1": "output_blocks_8_0_in_layers_2",
        "mid_block.resnets.1.conv1": "middle_block_2_in_layers_2",
    }
    for module, kohya in known.items():
        assert dict(unet.named_modules()).get(module) is not None, module
        assert sai_name(kohya_name("unet", module, True), layout) == f"lora_unet_{kohya}"
        assert canonical_name(f"lora_unet_{kohya}") == kohya_name("unet", module, True)
    # SD 1.x's upsampler at the level without attention sits in slot 1 (the same rule, read back).
    assert canonical_name("lora_unet_output_blocks_2_1_conv") == "lora_unet_up_blocks_0_upsamplers_0_conv"
    # Text-encoder and unknown names pass through; a diffusers-style name is not taken for a SAI one.
    for name in ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "lora_unet_input_blocks_4_7_x",
                 "lora_unet_down_blocks_1_attentions_0_proj_in"):
        assert canonical_name(name) == name


@pytest.mark.parametrize(("key", "expected"), [
    ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
     ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "down")),
    ("unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight",
     ("unet", "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0", "up")),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora.down.weight",
     ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k", "down")),
    ("unet.up_blocks.1.resnets.0.conv1.lora.down.weight", ("unet", "up_blocks.1.resnets.0.conv1", "down")),
    ("text_encoder_2.text_model.encoder.layers.3.self_attn.v_proj.lora_linear_layer.up.weight",
     ("text_encoder_2", "text_model.encoder.layers.3.self_attn.v_proj", "up")),
    ("unet.down_blocks.0.attentions.0.proj_in.alpha", None),
    ("unet.down_blocks.0.attentions.0.proj_in.lora_magnitude_vector", None),
])
def test_every_diffusers_spelling_is_read(key, expected):
    assert parse_diffusers_key(key) == expected


def test_kohyas_diffusers_file_keys_read_back_to_the_same_module():
    for module in ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
                   "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v", "down_blocks.0.resnets.0.conv1",
                   "mid_block.attentions.0.proj_in"):
        name = kohya_name("unet", module, False)
        down, up = diffusers_file_keys(name)
        assert "lora_A" not in down and "lora_B" not in up  # one spelling family for the whole file
        assert parse_diffusers_key(down) == ("unet", module, "down")
        assert parse_diffusers_key(up) == ("unet", module, "up")
    down, _ = diffusers_file_keys("lora_te2_text_model_encoder_layers_0_self_attn_q_proj")
    assert down == "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight"
