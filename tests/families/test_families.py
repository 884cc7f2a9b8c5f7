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
    modules = {p.stem for p in (HERE.parents[1] / "trainer" / "families").glob("*.py")} - {"__init__", "base"}
    assert modules == set(families.NAMES)
    assert typing.get_args(Architecture) == families.NAMES
    assert {(name, mode) for name, f in families.FAMILIES.items() for mode in f.modes} == set(JOBS)


@pytest.mark.parametrize("name", families.MODEL_FAMILIES)
def test_a_familys_shipped_configs_are_what_it_declares(name):
    """The single-file loader builds the family from these folders: the pipeline class, the text encoders and
    their tokenizers the family declares must be there."""
    family = families.family(name)
    assert set(family.config_folders) == {"epsilon", "v_prediction"}
    for folder_name in set(family.config_folders.values()):
        folder = MODEL_CONFIGS / folder_name
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        assert index["_class_name"] == family.pipeline_class, folder
        encoders = sorted(key for key in index if key.startswith("text_encoder"))
        assert encoders == sorted(e.component for e in family.text_encoders), folder
        for encoder in family.text_encoders:
            config = json.loads((folder / encoder.component / "config.json").read_text(encoding="utf-8"))
            assert config["architectures"] == [encoder.transformers_class], (folder, encoder.component)
            # OpenCLIP encoders run plain gelu, OpenAI CLIP quick_gelu (how detection tells them apart).
            assert (config["hidden_act"] != "quick_gelu") == encoder.open_clip, (folder, encoder.component)
    assert len(family.tiny["encoders"]) == len(family.text_encoders)
    assert family.kohya is not None and family.memory.reference_parameters["unet"] > 0


def test_lookups_name_what_is_known():
    assert families.is_toy("toy") and not families.is_toy("sdxl") and not families.is_toy("nonsense")
    with pytest.raises(KeyError, match="known: toy, sd15"):
        families.family("sd3")
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
