"""GUI test fixtures: a temporary data folder and project, a main window whose questions the test
answers, and checks that no trainer, thread or drain timer outlives its test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PRESETS
from trainer.config import Config, apply_overrides, config_from_dict, load_config
from trainer.project import Project

# A toy run that lasts until stopped: long enough to pause, resume and stop.
LONG_RUN = ["training.steps=100000", "toy.step_delay_ms=1", "training.log_every=2", "training.eval_every=10",
            "toy.weights_every=20", "toy.samples=256", "output.checkpoint_every=0"]
SHORT_RUN = ["training.steps=30", "toy.step_delay_ms=0", "training.log_every=5", "training.eval_every=10",
             "training.warmup_steps=0", "toy.weights_every=10", "toy.samples=256", "output.checkpoint_every=0"]


@pytest.fixture(autouse=True)
def settings_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("KAMAAL_DATA_DIR", str(data))
    return data


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"test left threads behind: {left}"


def configured(preset: str = "toy", overrides: list[str] | None = None) -> Config:
    base = load_config(PRESETS / f"{preset}.toml")
    return config_from_dict(apply_overrides(base.to_dict(), overrides or []))


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Project]:
    made: list[Project] = []

    def make(overrides: list[str] | None = None, preset: str = "toy") -> Project:
        project = Project.create(tmp_path / f"project-{len(made) + 1}", PRESETS / f"{preset}.toml")
        made.append(project)
        project.save(configured(preset, overrides))
        return project

    return make


class Answers:
    """Stands in for the window's question boxes: records each question; yes/no questions are answered
    with ``reply``, questions with several choices with the next of ``choices`` (else the first, safe one)."""

    def __init__(self, reply: bool = True) -> None:
        self.reply = reply
        self.questions: list[str] = []
        self.choices: list[str] = []  # answers for ``choose``, used up in order
        self.offered: list[tuple[str, ...]] = []  # the choices each such question offered

    def __call__(self, _parent: object, title: str, question: str) -> bool:
        self.questions.append(f"{title}: {question}")
        return self.reply

    def choose(self, _parent: object, title: str, question: str, choices) -> str | None:
        self.questions.append(f"{title}: {question}")
        self.offered.append(tuple(choices))
        answer = self.choices.pop(0) if self.choices else choices[0]
        assert answer in choices, f"{answer!r} is not one of {choices}"
        return answer


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def make_window(qtbot, answers: Answers, make_project):
    from desktop_app.main_window import MainWindow
    from desktop_app.style import apply_style

    windows: list[MainWindow] = []

    def make(overrides: list[str] | None = None, preset: str = "toy", project: Project | None = None) -> MainWindow:
        from PySide6.QtWidgets import QApplication

        apply_style(QApplication.instance())
        window = MainWindow(project or make_project(overrides, preset), ask=answers, choose=answers.choose)
        qtbot.addWidget(window)
        window.resize(1280, 800)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.session.shutdown(kill_after_s=20)  # a failing test must not leave a trainer behind
        assert not window.session._timer.isActive(), "the session's drain timer is still running"


@pytest.fixture
def make_panel(qtbot, make_project):
    """``make(overrides, images=0)``: a Dataset page on a new DreamBooth project whose subject folder
    holds ``images`` captioned photos; the fake class-image task; every panel shut down afterwards."""
    from desktop_app.dataset import DatasetPanel
    from desktop_app.train.config_model import ConfigModel
    from tests.gui.dataset_helpers import FAKE_TASK, photos

    panels: list[DatasetPanel] = []

    def make(overrides: list[str] | None = None, images: int = 0) -> DatasetPanel:
        project = make_project(["dataset.path=datasets/subject", "dreambooth.num_class_images=3",
                                *(overrides or [])], "sd15-dreambooth")
        if images:
            photos(project.root / "datasets" / "subject", images)
        panel = DatasetPanel(ConfigModel(project.config), project.root)
        panel.class_images.task_name = FAKE_TASK
        panel.project = project  # type: ignore[attr-defined]
        qtbot.addWidget(panel)
        panel.resize(1280, 760)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()
        assert not panel.class_images.runner.is_busy()
