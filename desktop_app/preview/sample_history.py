"""Every sampling point of a run, in step order: what the sample grid shows (one row per step).

Fed live by the run model (one ``Sample`` event per sampling point) or read back from a run folder
(``samples/step-NNNNNN/pII-seedS.png``, prompts from the run's ``config.toml``) for the Runs page
and for a resumed run.  Only paths are kept; the grid loads the pixels off the GUI thread.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from trainer.config import ConfigError
from trainer.protocol import Sample
from trainer.runfolder import CHECKPOINT_PATTERN, RunFolder

SAMPLE_FILE = re.compile(r"^p(\d+)-seed(-?\d+)\.png$")
# An edit family's preview pair: its control and target beside the edits, its column title in pII-pair.txt.
PAIR_FILE = re.compile(r"^p(\d+)-(control|target)\.png$")
PAIR_TITLE = "p{:02d}-pair.txt"


class SampleHistory(QObject):
    added = Signal(object)  # Sample (a new step, or a step drawn again replaces the old row)
    cleared = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._by_step: dict[int, Sample] = {}

    def steps(self) -> list[int]:
        return sorted(self._by_step)

    def at(self, step: int) -> Sample | None:
        return self._by_step.get(step)

    def samples(self) -> list[Sample]:
        return [self._by_step[step] for step in self.steps()]

    def columns(self) -> list[tuple[str, int]]:
        """(prompt, seed) pairs in the order they first appeared: the grid's columns."""
        seen: dict[tuple[str, int], None] = {}
        for sample in self.samples():
            for prompt, seed in zip(sample.prompts, sample.seeds, strict=True):
                seen.setdefault((prompt, seed), None)
        return list(seen)

    def path_for(self, step: int, column: tuple[str, int]) -> str | None:
        sample = self._by_step.get(step)
        if sample is None:
            return None
        for path, prompt, seed in zip(sample.paths, sample.prompts, sample.seeds, strict=True):
            if (prompt, seed) == column:
                return path
        return None

    def add(self, sample: Sample) -> None:
        self._by_step[sample.step] = sample
        self.added.emit(sample)

    def clear(self) -> None:
        self._by_step.clear()
        self.cleared.emit()

    def load(self, samples: list[Sample]) -> None:
        self.clear()
        for sample in samples:
            self.add(sample)


def read_sample_history(run_dir: Path) -> list[Sample]:
    """The samples a run folder holds, oldest step first (a folder being written is read as far as it goes)."""
    run = RunFolder(Path(run_dir))
    try:
        prompts = run.load_config().sampling.prompts
    except (ConfigError, OSError):
        prompts = []
    found: list[Sample] = []
    if not run.samples_dir.is_dir():
        return found
    for folder in sorted(run.samples_dir.iterdir()):
        match = CHECKPOINT_PATTERN.match(folder.name)  # the same step-NNNNNN naming
        if not match or not folder.is_dir():
            continue
        found += _step_sample(int(match.group(1)), folder, prompts)
    return found


def _step_sample(step: int, folder: Path, prompts: list[str]) -> list[Sample]:
    """One step folder's sample (none when it holds no image): each prompt's images by seed; an edit family's pair
    as control, its edits, target — the order and titles the trainer's ``Sample`` had."""
    edits: list[tuple[int, int, str]] = []  # (prompt index, seed, path)
    ends: dict[tuple[int, str], str] = {}  # (pair index, "control"/"target") → path
    for path in folder.iterdir():
        if name := SAMPLE_FILE.match(path.name):
            edits.append((int(name.group(1)), int(name.group(2)), str(path)))
        elif name := PAIR_FILE.match(path.name):
            ends[(int(name.group(1)), name.group(2))] = str(path)
    images: list[tuple[int, int, int, str, str]] = []  # (index, order, seed, path, title)
    for index, seed, path in edits:
        title = _pair_title(folder, index) if (index, "control") in ends else None
        if title is None:
            title = prompts[index] if index < len(prompts) else f"prompt {index + 1}"
        images.append((index, 1, seed, path, title))
    for (index, end), path in ends.items():
        seeds = sorted(seed for i, seed, _ in edits if i == index)
        if seeds:  # the trainer writes the pair's ends with its edits: a lone end is half-written
            title = _pair_title(folder, index) or f"pair {index + 1}"
            images.append((index, 0 if end == "control" else 2, seeds[0], path, f"{title} ({end})"))
    if not images:
        return []
    images.sort()
    return [Sample(step, tuple(i[3] for i in images), tuple(i[4] for i in images), tuple(i[2] for i in images))]


def _pair_title(folder: Path, index: int) -> str | None:
    try:
        return (folder / PAIR_TITLE.format(index)).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
