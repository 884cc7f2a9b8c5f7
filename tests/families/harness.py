"""The family tests' shared harness: each family's tiny model built once per test session, and one LoRA run per
family that several assertions read (it learns, its files are written and reproduce the trained image, and it is
the uninterrupted run a resume is held to).

Why: the per-family files used to build their tiny model again in every file and train the same short runs more
than once — a resume test trained its own uninterrupted run beside the LoRA test's, then a stopped one, then the
resumed one, each loading the model (a Qwen tokenizer alone takes about a second to load).  Here the LoRA run saves
a checkpoint a few steps before its end (``RESUME_FROM``), and ``resume_from`` continues a copy of the run folder
from it, as ``tests/trainer/test_cli.py`` pretends an interruption: the resumed run must end with the very weights
and losses of the uninterrupted one.

A new family joins with its tiny model (``tiny_models[arch]``, nothing to add) and, in its own test file, a
module-scoped ``lora_run`` fixture that calls ``train`` with its config (``lora_config``: the usual 30 steps, the
checkpoint to resume from; ``varied_captions`` with ``dataset.cache_text = "disk"`` where the family caches text); its
tests then read that run (``docs/architecture.md`` ▸ The family tests' harness).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.diffusion.conftest import diffusion_config
from tests.trainer.helpers import Recorder, run_in_process
from trainer.config import Config
from trainer.protocol import EXIT_OK, Failed, Finished, Sample
from trainer.runfolder import RunFolder

STEPS = 30  # the LoRA runs' length: what makes their held-out loss fall measurably (see each family's curve)
RESUME_FROM = 26  # a checkpoint this many steps in; the resumed run trains the last STEPS - RESUME_FROM


class TinyModels:
    """Each family's tiny model (seed 0), built on first use and shared by every test of the session: never write
    into one — copy it first (``shutil.copytree``), as the tests that swap a component do."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._built: dict[str, Path] = {}

    def __getitem__(self, arch: str) -> Path:
        if arch not in self._built:
            from trainer.models.tiny import build_tiny_model

            self._built[arch] = build_tiny_model(self._root / f"tiny-{arch}", arch, seed=0)
        return self._built[arch]


def vary_caption_lengths(dataset: Path, into: Path) -> Path:
    """A copy of ``dataset`` whose captions have different lengths (so a batch is padded and masked), each caption
    file lengthened by a clause 0, 1 or 2 times."""
    data = shutil.copytree(dataset, into)
    for i, caption in enumerate(sorted(data.glob("*.txt"))):
        caption.write_text(caption.read_text(encoding="utf-8") + ", drawn on a white page" * (i % 3), encoding="utf-8")
    return data


def lora_config(model_dir: Path, dataset_dir: Path, arch: str, **sections: Any) -> Config:
    """``diffusion_config``'s LoRA run (30 steps, held-out loss every 10) that also saves the checkpoint a resume
    starts from; keyword arguments update tables as there."""
    output = {"run_name": "tiny", "checkpoint_every": RESUME_FROM, **sections.pop("output", {})}
    return diffusion_config(model_dir, dataset_dir, arch, output=output, **sections)


@dataclass(frozen=True)
class TrainedRun:
    """A finished run and what it reported."""

    root: Path
    recorder: Recorder

    @property
    def config(self) -> Config:
        """The resolved config, as run."""
        return RunFolder(self.root).load_config()

    @property
    def outputs(self) -> list[Path]:
        return [Path(p) for p in self.recorder.of(Finished)[0].outputs]

    @property
    def final_sample(self) -> Sample:
        return self.recorder.of(Sample)[-1]

    def heldout_curve(self) -> list[float]:
        return [row["heldout_loss"] for row in RunFolder(self.root).read_metrics() if "heldout_loss" in row]

    def losses(self) -> list[float]:
        return [row["loss"] for row in RunFolder(self.root).read_metrics() if "loss" in row]

    def final_image(self) -> np.ndarray:
        """The run's last preview (the trained adapter's own picture), as int16 for differences."""
        from PIL import Image

        with Image.open(self.final_sample.paths[0]) as image:
            return np.asarray(image.convert("RGB"), dtype=np.int16)


def train(config: Config, run_dir: Path) -> TrainedRun:
    code, recorder = run_in_process(config, run_dir)
    assert code == EXIT_OK, recorder.of(Failed)
    return TrainedRun(run_dir, recorder)


def resume_from(run: TrainedRun, step: int, into: Path) -> TrainedRun:
    """A copy of ``run`` as if it had been interrupted after its checkpoint at ``step`` (newer checkpoints and the
    outputs gone), resumed to the end."""
    shutil.copytree(run.root, into)
    folder = RunFolder(into)
    assert any(saved == step for saved, _ in folder.checkpoints()), f"no checkpoint at step {step} in {run.root}"
    for saved, path in folder.checkpoints():
        if saved > step:
            shutil.rmtree(path)
    shutil.rmtree(folder.output_dir)
    from trainer.runlog import NoCommands
    from trainer.worker import run_worker

    recorder = Recorder()
    code = run_worker(into, NoCommands(), recorder, resume=True)
    assert code == EXIT_OK, recorder.of(Failed)
    return TrainedRun(into, recorder)


def assert_resume_equals_uninterrupted(run: TrainedRun, into: Path, step: int = RESUME_FROM) -> TrainedRun:
    """Resumed from ``step``, the run ends with the uninterrupted one's files, tensor for tensor, and its losses."""
    from safetensors.torch import load_file

    resumed = resume_from(run, step, into)
    assert [p.name for p in resumed.outputs] == [p.name for p in run.outputs]
    for ours, theirs in zip(resumed.outputs, run.outputs, strict=True):
        files = sorted(theirs.rglob("*.safetensors")) if theirs.is_dir() else [theirs]
        assert files, theirs
        for file in files:
            a, b = load_file(file), load_file(ours / file.relative_to(theirs) if theirs.is_dir() else ours)
            assert a.keys() == b.keys(), file.name
            assert all(a[k].equal(b[k]) for k in a), file.name
    assert resumed.losses() == run.losses()
    assert resumed.recorder.of(Finished)[0].step == STEPS
    return resumed
