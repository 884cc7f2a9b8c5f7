"""Unusable model paths are refused with an InputError that names the file and says what is wrong."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trainer.errors import InputError
from trainer.models import load_model


class Sneaky:
    """Unpickling this would call print(): the kind of payload weights_only=True must refuse."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def refused(path: Path, **kwargs: object) -> str:
    with pytest.raises(InputError) as caught:
        load_model(path, **kwargs)
    message = str(caught.value)
    assert message.startswith("model.path: ") and str(path) in message, message
    return message


def test_missing_path(tmp_path):
    assert "does not exist" in refused(tmp_path / "nowhere.safetensors")


def test_truncated_safetensors(tmp_path, tiny_single_files):
    data = tiny_single_files["sd15"].read_bytes()
    cut_header = tmp_path / "cut-header.safetensors"
    cut_header.write_bytes(data[:4000])
    assert "is truncated or not a safetensors file" in refused(cut_header)
    cut_data = tmp_path / "cut-data.safetensors"
    cut_data.write_bytes(data[:-1000])
    assert re.search(r"is truncated \(the header promises \d+ bytes, the file has \d+\)", refused(cut_data))


@pytest.mark.parametrize("suffix, expected", [(".safetensors", "is truncated or not a safetensors file"),
                                              (".ckpt", "is truncated or not a PyTorch checkpoint")])
def test_random_bytes(tmp_path, suffix, expected):
    # Seeded, and many of them: on damaged bytes the weights-only unpickler raises whatever it trips over
    # (UnpicklingError, KeyError, IndexError, EOFError…), and each must still become the same clear refusal.
    noise = tmp_path / f"noise{suffix}"
    for seed in range(300):
        noise.write_bytes(random.Random(seed).randbytes(2_000))
        assert expected in refused(noise), seed


def test_unrelated_tensors(tmp_path):
    other = tmp_path / "classifier.safetensors"
    save_file({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, other)
    assert "is not a Stable Diffusion checkpoint" in refused(other)


def test_lora_file_is_recognised_as_not_a_base_model(tmp_path):
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, lora)
    assert "LoRA" in refused(lora)


def test_ckpt_with_a_non_tensor_pickle_is_refused_unexecuted(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "payload": Sneaky()}, evil)
    message = refused(evil)
    assert "weights_only=True" in message and "Python objects" in message
    assert "this must never run" not in capsys.readouterr().out


def test_incomplete_checkpoint_names_the_missing_part(tmp_path, tiny_single_files, tiny_config_dirs):
    state = load_file(tiny_single_files["sd15"])
    no_vae = tmp_path / "no-vae.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("first_stage_model.")}, no_vae)
    assert "has no VAE weights" in refused(no_vae, config_dir=tiny_config_dirs["sd15"])
    holes = tmp_path / "holes.safetensors"
    save_file({k: v for k, v in state.items() if "output_blocks.2." not in k}, holes)
    assert "is missing unet weights" in refused(holes, config_dir=tiny_config_dirs["sd15"])


def test_folder_that_is_not_a_diffusers_model(tmp_path):
    (tmp_path / "some-folder").mkdir()
    assert "not a complete diffusers model folder (no model_index.json)" in refused(tmp_path / "some-folder")


def test_unknown_suffix(tmp_path):
    weird = tmp_path / "model.onnx"
    weird.write_bytes(b"\0" * 100)
    assert "neither a .safetensors/.ckpt file nor a diffusers folder" in refused(weird)
