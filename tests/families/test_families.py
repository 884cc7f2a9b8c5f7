"""The model-family registry (trainer/families): what every family declares is consistent with the files
shipped for it, and moving SD 1.x/2.x/SDXL into it changed no result, bit for bit."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from trainer import families
from trainer.config import Architecture
from trainer.jobs import JOBS
from trainer.models.info import MODEL_CONFIGS

HERE = Path(__file__).resolve().parent


def test_every_family_module_is_registered_and_the_config_offers_exactly_them():
    import importlib

    modules = {p.stem for p in (HERE.parents[1] / "trainer" / "families").glob("*.py")} - {"__init__", "base"}
    # A module without a FAMILY holds facts about families (flux2: Flux.2's, shared by klein and dev;
    # example_layers: the Learn page's real layers); every other is one family.
    shared = {m for m in modules if not hasattr(importlib.import_module(f"trainer.families.{m}"), "FAMILY")}
    assert shared == {"flux2", "example_layers"}
    assert modules - shared == set(families.NAMES)
    assert typing.get_args(Architecture) == families.NAMES
    assert {(name, mode) for name, f in families.FAMILIES.items() for mode in f.modes} == set(JOBS)


@pytest.mark.parametrize("name", [n for n in families.MODEL_FAMILIES if families.family(n).config_folders])
def test_a_familys_shipped_configs_are_what_it_declares(name):
    """The single-file loader builds the family from these folders: the pipeline class, the text encoders and
    their tokenizers the family declares must be there."""
    family = families.family(name)
    assert set(family.config_folders) == ({"flow_matching"} if family.flow else {"epsilon", "v_prediction"})
    for folder_name in set(family.config_folders.values()):
        folder = MODEL_CONFIGS / folder_name
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        assert index["_class_name"] == family.pipeline_class, folder
        # Components are [library, class] pairs; Krea 2's text_encoder_select_layers is a pipeline setting.
        encoders = sorted(key for key, value in index.items() if key.startswith("text_encoder")
                          and isinstance(value, list) and len(value) == 2 and isinstance(value[0], str))
        assert encoders == sorted(e.component for e in family.text_encoders), folder
        for encoder in family.text_encoders:
            config = json.loads((folder / encoder.component / "config.json").read_text(encoding="utf-8"))
            assert config["architectures"] == [encoder.transformers_class], (folder, encoder.component)
            if encoder.tokenizer_kind == "clip":  # OpenCLIP runs plain gelu, OpenAI CLIP quick_gelu (detection)
                assert (config["hidden_act"] != "quick_gelu") == encoder.open_clip, (folder, encoder.component)
    assert len(family.tiny["encoders"]) == len(family.text_encoders)
    if family.flow is not None:
        return  # the flow families' config folders: tests/families/test_flux_single_files.py
    assert family.kohya is not None and family.memory.reference_parameters[family.denoiser] > 0


@pytest.mark.parametrize("name", families.TINY_FAMILIES)
def test_every_familys_tiny_model_is_built_from_what_it_declares(name, tiny_models):
    """The tiny model is a real folder of the family's pipeline: the registry's component names, classes and
    detection agree with it (what the loader, the trainer and the exports rely on).  The folder is the session's
    (``build_tiny_model(…, seed=0)``, shared with the other family tests)."""
    from trainer.models import inspect_model

    family = families.family(name)
    folder = tiny_models[name]
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == family.pipeline_class
    assert index[family.denoiser][1] == (family.tiny["denoiser"][0] if "denoiser" in family.tiny
                                         else "UNet2DConditionModel")
    for encoder in family.text_encoders:
        assert index[encoder.component][1] == encoder.transformers_class
        assert (folder / encoder.tokenizer).is_dir()
    info = inspect_model(folder)
    # A family whose folders are another's (Flux.2 klein edit: klein's folder) is detected as that one, and loads as
    # this one where the config names it (``Family.files_of``).
    assert info.architecture == name or (family.files_of is not None and info.architecture == family.files_of)
    assert (info.prediction_type == "flow_matching") == (family.flow is not None)


def marked_file_keys(family: families.Family) -> set[str]:
    """The keys that show a single file of ``family``: its markers, its parent's (a Chroma file holds Flux's
    too), and what other families' files lack where they share its markers (a Z-Image file has the pad tokens
    a Lumina 2 file lacks)."""
    markers = set(family.file_markers)
    if family.variant_of:
        markers |= set(families.family(family.variant_of).file_markers)
    for other in families.FAMILIES.values():
        if other is not family and set(other.file_markers) & markers:
            markers |= set(other.file_lacks)
    return {f"model.diffusion_model.{marker}0.weight" for marker in markers}


@pytest.mark.parametrize("name", [n for n in families.MODEL_FAMILIES if families.family(n).file_markers])
def test_a_single_file_is_taken_for_the_family_its_keys_mark(name, tmp_path):
    """Detection reads the registry's markers, variants and shared markers first: a file with a family's keys is
    that family, and a family without a reader refuses it by name instead of letting another's reader fail."""
    from safetensors.torch import save_file

    from trainer.errors import InputError
    from trainer.models import inspect_model
    from trainer.models.detect import detect_architecture

    family = families.family(name)
    keys = marked_file_keys(family)
    if family.single_file_reader is not None:
        assert detect_architecture(dict.fromkeys(keys, (2, 2)), "x.safetensors") == name
        return
    import torch

    path = tmp_path / f"{name}.safetensors"
    save_file({key: torch.zeros(2, 2) for key in keys}, path)
    with pytest.raises(InputError, match=f"{path} is a {family.display_name} checkpoint.*diffusers folder"):
        inspect_model(path)


def test_lookups_name_what_is_known():
    assert families.is_toy("toy") and not families.is_toy("sdxl") and not families.is_toy("nonsense")
    with pytest.raises(KeyError, match="known: toy, sd15"):
        families.family("sd4")
    assert [f.name for f in families.by_lora_family("sd1/2")] == ["sd15", "sd2"]
    assert families.lora_family_facts("sdxl").lora_family_label == "SDXL"


@pytest.mark.slow
def test_training_results_are_bit_identical_to_before_the_registry():
    """LoRA (with the text encoders) and frozen-layer runs on the tiny SD 1.x, 2.x and SDXL models: output
    tensors, samples and losses hashed, against the fingerprints taken before the families moved into the
    registry (``fingerprint.py``).  Float kernels differ between CPUs, so only on the machine kind they were
    taken on."""
    from tests.families.fingerprint import machine_key, take

    expected = json.loads((HERE / "fingerprints.json").read_text(encoding="utf-8"))
    if expected["machine"] != machine_key():
        pytest.skip(f"fingerprints were taken on {expected['machine']!r}, this is {machine_key()!r}")
    assert take() == expected
