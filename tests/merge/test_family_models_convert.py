"""convert-model for the transformer families: a diffusers folder becomes the family's own single file, tensor for
tensor what a full run writes (BFL's transformer file for Flux, Stability's whole file for SD 3.5), and that file
becomes a folder again with every weight as it was (Flux's file with its text encoders and VAE named beside it);
what cannot be converted is refused by name, exit code 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.merge.family_models import folder_tensors, write_single_file
from trainer.cli import main
from trainer.errors import InputError
from trainer.merge.convert import convert_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from trainer.models.tiny import build_tiny_model, write_tiny_config_dir

    root = tmp_path_factory.mktemp("convert-models")
    built = {}
    for arch in ("flux", "sd3"):
        model = build_tiny_model(root / arch, arch, seed=0)
        built[arch] = (model, write_tiny_config_dir(model, root / f"{arch}-config"))
    return built


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_flux_folder_to_bfls_file_and_back_keeps_every_weight(tiny, tmp_path):
    from trainer.models.original_layout import vae_to_original

    model, config = tiny["flux"]
    file = convert_model(model, tmp_path / "flux.safetensors")
    same_tensors(load_file(file), load_file(write_single_file(model, tmp_path / "run.safetensors")))
    assert not any(k.startswith(("transformer.", "text_encoder", "vae")) for k in load_file(file))  # BFL's names

    # The file holds the transformer only: alone it is refused naming what it needs, as the loader does.
    with pytest.raises(InputError, match=r"^text encoder files: Flux needs its clip_l and t5xxl"):
        convert_model(file, tmp_path / "alone", config_dir=config)
    assert not (tmp_path / "alone").exists()

    vae = tmp_path / "ae.safetensors"
    state = {k: v for k, v in load_file(next((model / "vae").glob("*.safetensors"))).items()}
    blocks = len(json.loads((model / "vae" / "config.json").read_text())["block_out_channels"])
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae_to_original(state, blocks).items()},
              vae)
    encoders = [str(next((model / name).glob("*.safetensors"))) for name in ("text_encoder", "text_encoder_2")]
    back = tmp_path / "back"
    assert main(["merge", "convert-model", str(file), str(back), "--config-dir", str(config), "--vae-file", str(vae),
                 *(arg for encoder in encoders for arg in ("--text-encoder-file", encoder))]) == 0
    same_tensors(folder_tensors(back), folder_tensors(model))


def test_sd35_folder_to_stabilitys_whole_file_and_back_keeps_every_weight(tiny, tmp_path):
    model, config = tiny["sd3"]
    file = convert_model(model, tmp_path / "sd35.safetensors")
    written = load_file(file)
    same_tensors(written, load_file(write_single_file(model, tmp_path / "run.safetensors")))
    assert any(k.startswith("text_encoders.") for k in written) and any(k.startswith("first_stage_model.")
                                                                        for k in written)
    back = convert_model(file, tmp_path / "back", config_dir=config)
    same_tensors(folder_tensors(back), folder_tensors(model))


def test_the_file_keeps_the_transformers_precision_by_default(tiny, tmp_path):
    """``--dtype auto`` reads the transformer folder's dtype (a real Flux folder is bf16): the file is bf16 too, not
    the float32 an SD-only lookup (``unet/``) fell back to."""
    model, _ = tiny["flux"]
    half = shutil.copytree(model, tmp_path / "bf16")
    for file in (half / "transformer").glob("*.safetensors"):
        save_file({k: v.to(torch.bfloat16) for k, v in load_file(file).items()}, file, metadata={"format": "pt"})
    written = load_file(convert_model(half, tmp_path / "bf16.safetensors"))
    assert {v.dtype for v in written.values()} == {torch.bfloat16}


def test_a_family_kamaal_writes_no_file_for_is_refused_by_name_with_exit_2(tiny, tmp_path, capsys):
    model, _ = tiny["flux"]
    kontext = shutil.copytree(model, tmp_path / "kontext")
    index = json.loads((kontext / "model_index.json").read_text())
    (kontext / "model_index.json").write_text(json.dumps(index | {"_class_name": "FluxKontextPipeline"}))
    out = tmp_path / "kontext.safetensors"
    assert main(["merge", "convert-model", str(kontext), str(out)]) == 2
    err = capsys.readouterr().err
    assert "Flux.1 Kontext" in err and "writes no single file" in err and "Traceback" not in err
    assert not out.exists()
