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
        images = []
        for path in folder.iterdir():
            name = SAMPLE_FILE.match(path.name)
            if name:
                index, seed = int(name.group(1)), int(name.group(2))
                prompt = prompts[index] if index < len(prompts) else f"prompt {index + 1}"
                images.append((index, seed, str(path), prompt))
        if images:
            images.sort()
            found.append(Sample(int(match.group(1)), tuple(i[2] for i in images), tuple(i[3] for i in images),
                                tuple(i[1] for i in images)))
    return found
