"""Checkpoint merges on tiny models: exact arithmetic, per-block weights, refusals, conversions."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from trainer.errors import InputError
from trainer.merge.blocks import block_of, model_blocks, parse_block_weights
from trainer.merge.checkpoints import merge_checkpoints
from trainer.merge.convert import convert_model
from trainer.merge.outputs import MERGE_INFO_FILE, MERGE_METADATA_KEY

UNET = "unet/diffusion_pytorch_model.safetensors"


def components(folder) -> dict[str, torch.Tensor]:
    tensors = {}
    for part in ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"):
        tensors |= {f"{part.split('/')[0]}/{k}": v for k, v in load_file(folder / f"{part}.safetensors").items()}
    return tensors


@pytest.fixture(scope="module")
def single_files(tmp_path_factory, sd15_a, sd15_b, sd15_c):
    out = tmp_path_factory.mktemp("single")
    return {name: convert_model(model, out / f"{name}.safetensors")
            for name, model in (("a", sd15_a), ("b", sd15_b), ("c", sd15_c))}


def test_weighted_sum_of_folders_is_exact(tmp_path, sd15_a, sd15_b):
    merge_checkpoints(sd15_a, sd15_b, tmp_path / "ab", alpha=0.3)
    a, b, merged = components(sd15_a), components(sd15_b), components(tmp_path / "ab")
    assert merged.keys() == a.keys()
    for key, value in merged.items():
        assert torch.allclose(value, a[key] * 0.7 + b[key] * 0.3, atol=1e-7), key
    assert json.loads((tmp_path / "ab" / MERGE_INFO_FILE).read_text())["weights"]["alpha"] == 0.3
    assert (tmp_path / "ab" / "tokenizer" / "tokenizer.json").is_file()  # a loadable model folder
    from tests.merge.conftest import load_pipeline

    assert load_pipeline(tmp_path / "ab") is not None


def test_add_difference_of_single_files_is_exact(tmp_path, single_files):
    out = tmp_path / "abc.safetensors"
    merge_checkpoints(single_files["a"], single_files["b"], out, alpha=0.8, c=single_files["c"],
                      method="add_difference")
    a, b, c, merged = (load_file(p) for p in (single_files["a"], single_files["b"], single_files["c"], out))
    assert merged.keys() == a.keys()
    for key, value in merged.items():
        assert torch.allclose(value, a[key] + (b[key] - c[key]) * 0.8, atol=1e-6), key
    with safe_open(out, "pt") as handle:
        record = json.loads(handle.metadata()[MERGE_METADATA_KEY])
    assert record["operation"] == "add_difference" and set(record["sources"]) == {"A", "B", "C"}


def test_block_weights_apply_to_their_blocks_only(tmp_path, sd15_a, sd15_b):
    merge_checkpoints(sd15_a, sd15_b, tmp_path / "blocks", alpha=0.5, block_weights="IN*=0,OUT01=1")
    a, b, merged = components(sd15_a), components(sd15_b), components(tmp_path / "blocks")
    seen = set()
    for key, value in merged.items():
        block = block_of(key)
        weight = 0.0 if block.startswith("IN") else 1.0 if block == "OUT01" else 0.5
        seen.add(block)
        assert torch.allclose(value, a[key] * (1 - weight) + b[key] * weight, atol=1e-7), key
    assert {"BASE", "IN00", "IN03", "M00", "OUT01", "OUT05"} <= seen


def test_block_names_agree_between_folder_and_single_file(sd15_a, single_files):
    from trainer.merge.sources import open_model

    with open_model(sd15_a, "A") as folder, open_model(single_files["a"], "A") as single:
        assert model_blocks(folder.specs) == model_blocks(single.specs)
        # The same layer gets the same block name in either layout.
        assert block_of("unet/down_blocks.1.resnets.0.conv1.weight") == \
            block_of("model.diffusion_model.input_blocks.4.0.in_layers.2.weight") == "IN04"
        assert block_of("unet/up_blocks.0.upsamplers.0.conv.weight") == \
            block_of("model.diffusion_model.output_blocks.2.1.conv.weight") == "OUT02"
    blocks = model_blocks(folder.specs)
    assert blocks[0] == "BASE" and "M00" in blocks
    with pytest.raises(InputError, match="names no block"):
        parse_block_weights("IN99=1", blocks, 0.5)
    with pytest.raises(InputError, match="numbers given"):
        parse_block_weights("0.1,0.2", blocks, 0.5)


def test_incompatible_models_are_refused_with_a_reason(tmp_path, sd15_a, sdxl_a, single_files):
    with pytest.raises(InputError, match=r"model B: .* is SDXL but model A is Stable Diffusion 1\.x"):
        merge_checkpoints(sd15_a, sdxl_a, tmp_path / "x", alpha=0.5)
    with pytest.raises(InputError, match=r"single-file checkpoint but model A is a diffusers folder.*convert-model"):
        merge_checkpoints(sd15_a, single_files["b"], tmp_path / "y", alpha=0.5)
    with pytest.raises(InputError, match="needs a third model C"):
        merge_checkpoints(sd15_a, sd15_a, tmp_path / "z", method="add_difference")
    with pytest.raises(InputError, match="is not a Stable Diffusion checkpoint"):
        merge_checkpoints(single_files["a"], sd15_a / UNET, tmp_path / "w.safetensors")
    assert not list(tmp_path.iterdir())


def test_inputs_are_never_overwritten(tmp_path, sd15_a, sd15_b, single_files):
    before = single_files["a"].read_bytes()
    with pytest.raises(InputError, match="is also an input"):
        merge_checkpoints(single_files["a"], single_files["b"], single_files["a"])
    with pytest.raises(InputError, match="is also an input"):
        merge_checkpoints(sd15_a, sd15_b, sd15_b)
    with pytest.raises(InputError, match="is also an input"):
        convert_model(single_files["a"], single_files["a"], to="single-file")
    assert single_files["a"].read_bytes() == before
    # A non-model folder with files in it is never replaced by an output.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds no diffusers model"):
        merge_checkpoints(sd15_a, sd15_b, tmp_path / "notes")


def test_model_conversion_round_trips(tmp_path, sd15_a, single_files):
    from trainer.models.tiny import write_tiny_config_dir

    configs = write_tiny_config_dir(sd15_a, tmp_path / "configs")
    folder = convert_model(single_files["a"], tmp_path / "back", config_dir=configs)
    original, round_trip = components(sd15_a), components(folder)
    assert original.keys() == round_trip.keys()
    assert all(torch.equal(original[k], round_trip[k]) for k in original)
    again = convert_model(folder, tmp_path / "again.safetensors")
    first, second = load_file(single_files["a"]), load_file(again)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_sdxl_model_conversion_round_trips(tmp_path, sdxl_a):
    # SDXL's second encoder is OpenCLIP in the single file (fused q/k/v, transposed projection).
    from trainer.models.tiny import write_tiny_config_dir

    single = convert_model(sdxl_a, tmp_path / "sdxl.safetensors")
    folder = convert_model(single, tmp_path / "back", config_dir=write_tiny_config_dir(sdxl_a, tmp_path / "configs"))
    for part in ("unet/diffusion_pytorch_model", "text_encoder/model", "text_encoder_2/model"):
        original, round_trip = load_file(sdxl_a / f"{part}.safetensors"), load_file(folder / f"{part}.safetensors")
        assert original.keys() == round_trip.keys()
        assert all(torch.equal(original[k], round_trip[k]) for k in original), part
