"""The family tests' fixtures: the diffusion tests' small generated dataset, and every family's tiny model built once
per session (``tests/families/harness.py``)."""

from pathlib import Path

import pytest

from tests.diffusion.conftest import shapes_dataset  # noqa: F401  (a fixture, found by name)
from tests.families.harness import TinyModels, vary_caption_lengths


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """``tiny_models[arch]``: the family's tiny model folder, shared by the whole session (copy it to change it)."""
    return TinyModels(tmp_path_factory.mktemp("family-models"))


@pytest.fixture(scope="session")
def varied_captions(tmp_path_factory, shapes_dataset) -> Path:  # noqa: F811  (the fixture imported above)
    """The shapes dataset with captions of three lengths (batches padded and masked)."""
    return vary_caption_lengths(shapes_dataset, tmp_path_factory.mktemp("data") / "varied")
