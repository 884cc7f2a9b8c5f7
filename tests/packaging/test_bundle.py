"""The packaged app: build.spec still builds, and the bundle passes its own self-test without writing into itself.

Slow (a PyInstaller build of torch, diffusers and Qt takes minutes; see README, "Packaging") and so skipped
unless ``KAMAAL_TEST_PACKAGE=1``; ``make package`` runs the same build and self-test.  The fast tests of the
self-test's own logic are in ``test_self_test.py`` and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app import paths
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("KAMAAL_TEST_PACKAGE") != "1",
                       reason="builds the PyInstaller bundle (minutes); set KAMAAL_TEST_PACKAGE=1 to run it"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bundle check runs on Linux"),
]


def without_network() -> list[str]:
    """``unshare -n`` (a network namespace with nothing in it) where allowed, to prove the bundle needs no network."""
    allowed = shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    return ["unshare", "-n"] if allowed else []


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pyinstaller = Path(sys.executable).parent / "pyinstaller"
    if not pyinstaller.exists():
        pytest.fail("pyinstaller is not installed: pip install -c constraints.txt -e '.[package]'")
    out = tmp_path_factory.mktemp("package")
    result = subprocess.run([str(pyinstaller), "--noconfirm", "--log-level", "WARN", "--distpath", str(out / "dist"),
                             "--workpath", str(out / "build"), "build.spec"],
                            capture_output=True, text=True, cwd=REPO, timeout=3000)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    folder = out / "dist" / "Kamaal"
    assert (folder / "Kamaal").is_file()
    yield folder
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.timeout(3600)
def test_the_bundle_holds_what_the_app_needs_and_not_more(bundle):
    internal = bundle / "_internal"
    for needed in ("resources/presets/demo.toml", "resources/models/shapes-sd/model_index.json",
                   "resources/tokenizers/clip/merges.txt", "resources/demo/dataset",
                   "resources/lessons/hi-Latn/01-weights.md", "resources/i18n/kamaal_hi-Latn.qm"):
        assert (internal / needed).exists(), needed
    assert list(internal.glob("torch/lib/libtorch_cpu*")), "torch's libraries are missing"
    assert list(internal.glob("PySide6/Qt/plugins/platforms/*offscreen*")), "Qt's offscreen platform plugin"
    assert list(internal.glob("**/libheif*")) and list(internal.glob("_pi_heif*")), "pi-heif (HEIC photos)"
    assert not list(internal.glob("**/*x265*")), "pillow-heif's GPL encoder (x265) must not ship"
    for unwanted in ("torch/test", "tensorboard", "pytest", "tkinter", "hf_xet"):
        assert not (internal / unwanted).exists(), f"{unwanted} should not be in the bundle"
    assert [path.name for path in (internal / "torch" / "bin").iterdir()] == ["torch_shm_manager"]
    assert not list(internal.glob("libcudart*")), "the build machine's CUDA runtime was copied in"


@pytest.mark.timeout(3600)
def test_the_bundle_passes_its_self_test_and_writes_nothing_into_itself(bundle, tmp_path):
    before = snapshot(bundle)
    user_data, temp = tmp_path / "user-data", tmp_path / "tmp"
    temp.mkdir()
    env = {name: value for name, value in os.environ.items()
           if name not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "PYTHONPATH")}
    env.update({paths.DATA_DIR_ENV: str(user_data), "TMPDIR": str(temp)})
    result = subprocess.run([*without_network(), str(bundle / "Kamaal"), "--self-test"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=900, env=env)
    report = result.stdout
    assert result.returncode == 0, report + result.stderr[-5000:]
    assert "packaged app" in report and "Self-test passed" in report, report
    assert snapshot(bundle) == before, "the self-test wrote into the bundle"
    assert not user_data.exists()
