"""Suite-wide fixtures: offline, offscreen, and no test may leave a child process behind."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import multiprocessing
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
PRESETS = REPO / "resources" / "presets"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip where there is no CUDA GPU (torch is imported only when such a test is collected)."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check runs these on one)")
        for item in marked:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def resource_tracker():
    """Start multiprocessing's resource tracker up front: it lives as long as the test session
    (by design), so it must not count as a child some test left behind."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


@pytest.fixture(autouse=True)
def no_leftover_children(resource_tracker):
    """Fail any test that leaves a child process running (the trainer, or anything else)."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while True:
        multiprocessing.active_children()  # reaps finished multiprocessing children
        left = [c for c in psutil.Process().children(recursive=True)
                if c.pid not in before and c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for child in left:
        child.kill()
    assert not left, f"test left child processes behind: {[(c.pid, c.name()) for c in left]}"


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one AcceleratorState per process (a real run has its own process): reset it after a
    test that trained in this one, so a later in-process run in another precision is not refused."""
    yield
    import sys

    if "accelerate.state" in sys.modules:  # only tests that trained: never import accelerate for the rest
        sys.modules["accelerate.state"].AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def toy_preset() -> Path:
    return PRESETS / "toy.toml"
