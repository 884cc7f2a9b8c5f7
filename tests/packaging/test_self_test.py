"""``kamaal --self-test`` from a source checkout: it passes here, and fails, naming what, when something breaks.

The packaged app runs the same code (``make package``; ``test_bundle.py`` builds it when asked to); these
tests keep its logic honest without building a bundle.  The in-process ones start real trainer children.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app import launcher, paths, self_test
from tests.conftest import REPO


def clean_env(**extra: str) -> dict[str, str]:
    """No display (the self-test is headless) and no data-folder override unless a test sets one."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", paths.DATA_DIR_ENV)
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env.update(extra)
    return env


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the self-test makes its temporary work folder (so a test can look at what it left)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def no_device_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the trainer-process check (a child that imports torch) in tests about something else."""
    monkeypatch.setattr(self_test, "check_trainer_process",
                        lambda: self_test.CheckResult("trainer process", True, "skipped by the test", 0.0))


@pytest.mark.slow
def test_self_test_passes_from_source_and_leaves_nothing_behind(tmp_path):
    user_data, temp = tmp_path / "user-data", tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run([sys.executable, "-m", "desktop_app", "--self-test"], capture_output=True, text=True,
                            cwd=REPO, timeout=280,
                            env=clean_env(**{paths.DATA_DIR_ENV: str(user_data), "TMPDIR": str(temp)}))
    report = result.stdout
    assert result.returncode == 0, report + result.stderr
    for name in ("trainer process", "toy training", "diffusion demo", "main window", "dataset workers", "app process"):
        assert f"ok      {name}" in report, report
    assert "torch " in report and "source checkout" in report
    assert "Self-test passed" in report
    assert not user_data.exists(), "the self-test wrote into the user's data folder"
    # (torch keeps its own compile cache in the temp folder; not ours to judge)
    assert not list(temp.glob("kamaal-self-test-*")), "the work folder of a passing self-test must be removed"


def test_a_missing_output_fails_the_check_that_should_have_written_it(temp_root):
    check = replace(self_test.TOY_CHECK, expected=(*self_test.TOY_CHECK.expected, "output/missing.safetensors"))
    report = io.StringIO()
    assert self_test.run_self_test([check], window=False, stream=report) == 1
    text = report.getvalue()
    assert "ok      trainer process" in text, text
    assert "FAILED  toy training" in text and "missing or empty: output/missing.safetensors" in text, text
    # Other suites in this process may have imported torch, so the "app process" check may fail here too.
    assert "Self-test FAILED: toy training" in text, text
    [work] = temp_root.iterdir()  # kept after a failure, for its log.txt
    assert (work / "runs" / "toy" / "output" / "toy.safetensors").is_file()
    assert (work / "runs" / "toy" / "log.txt").is_file()


def test_a_failing_trainer_is_reported_with_its_message(temp_root, tmp_path, no_device_check):
    missing = tmp_path / "no-such-model"
    check = replace(self_test.DEMO_CHECK, overrides=(*self_test.DEMO_CHECK.overrides, f"model.path={missing}"))
    report = io.StringIO()
    assert self_test.run_self_test([check], window=False, stream=report) == 1
    text = report.getvalue()
    [line] = [line for line in text.splitlines() if line.startswith("  FAILED  diffusion demo")]
    assert str(missing) in line, text


def test_a_missing_preset_is_reported_and_a_windowed_build_writes_the_report_to_a_file(temp_root, monkeypatch,
                                                                                       no_device_check):
    """A windowed build on Windows has no stdout/stderr: the launcher gives it null streams (so tqdm and print
    cannot crash it) and the report lands in kamaal-self-test.txt in the temp folder."""
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    launcher.give_windowed_builds_streams()
    null_streams = (sys.stdout, sys.stderr)
    try:
        print("goes nowhere", file=sys.stderr)
        check = replace(self_test.TOY_CHECK, name="renamed preset", preset="no-such-preset")
        assert self_test.run_self_test([check], window=False) == 1
    finally:
        for stream in null_streams:
            stream.close()
    text = (temp_root / self_test.REPORT_FILE).read_text(encoding="utf-8")
    assert "FAILED  renamed preset" in text and "no preset called 'no-such-preset'" in text, text


def test_children_see_the_temporary_data_folder_and_the_environment_is_restored_after(temp_root, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    seen: dict[str, str] = {}

    def record_environment() -> self_test.CheckResult:  # stands in for the first check: what would a child get?
        seen.update({name: os.environ[name] for name in (paths.DATA_DIR_ENV, "OMP_NUM_THREADS",
                                                           "HF_HUB_DISABLE_PROGRESS_BARS")})
        return self_test.CheckResult("trainer process", True, "recorded", 0.0)

    monkeypatch.setattr(self_test, "check_trainer_process", record_environment)
    self_test.run_self_test([], window=False, stream=io.StringIO())
    data = Path(seen.pop(paths.DATA_DIR_ENV))
    assert data.name == "data" and data.parent.parent == temp_root and data.parent.name.startswith("kamaal-self-test-")
    assert seen == {"OMP_NUM_THREADS": "3", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # the user's choice wins
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert paths.DATA_DIR_ENV not in os.environ and "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def test_help_lists_the_self_test(capsys):
    with pytest.raises(SystemExit):
        launcher.main(["--help"])
    assert "--self-test" in capsys.readouterr().out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME decides the folder on Linux only")
def test_the_user_data_folder_has_a_fixed_name(tmp_path):
    """Settings survive an upgrade: the folder is named by fixed constants, not by the version or executable."""
    code = "from desktop_app import paths; print(paths.data_dir()); print(paths.settings_path())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                            env=clean_env(XDG_DATA_HOME=str(tmp_path), HOME=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    data, settings = result.stdout.split()
    assert Path(data) == tmp_path / "Kamaal"
    assert Path(settings) == tmp_path / "Kamaal" / "settings.ini"
    assert (paths.APP_NAME, paths.ORGANIZATION_NAME) == ("Kamaal", "")
