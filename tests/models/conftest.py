"""Fixtures for the model tests: tiny models built once per session, and a network that refuses to connect."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from safetensors.torch import save_file

from trainer.models.original_layout import pipeline_to_original
from trainer.models.tiny import build_tiny_model, tiny_pipeline, write_tiny_config_dir


class NetworkUsed(AssertionError):
    """Raised by any socket connection attempt while ``no_network`` is active."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection (hub download, DNS lookup, telemetry) fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkUsed(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny diffusers folders (seed 0) for each architecture, built once."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_model(root / arch, arch, seed=0) for arch in ("sd15", "sd2", "sdxl")}


@pytest.fixture(scope="session")
def tiny_single_files(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model as one original-layout (CompVis/SGM) .safetensors, as A1111/ComfyUI files are."""
    root = tmp_path_factory.mktemp("tiny-single-files")
    files = {}
    for arch in tiny_models:
        state = {k: v.contiguous() for k, v in pipeline_to_original(tiny_pipeline(arch, seed=0), arch).items()}
        files[arch] = root / f"{arch}.safetensors"
        save_file(state, files[arch])
    return files


@pytest.fixture(scope="session")
def tiny_config_dirs(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The weight-free config folders a tiny single file is loaded with (like resources/model_configs)."""
    root = tmp_path_factory.mktemp("tiny-configs")
    return {arch: write_tiny_config_dir(folder, root / arch) for arch, folder in tiny_models.items()}
