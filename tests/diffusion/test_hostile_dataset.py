"""A training run over a dataset with hostile files: it finishes, and log.txt names each file it would not read.

Before: a caption that was a FIFO hung the run at "collecting examples", and a 200 MB caption was read,
normalised and tokenised whole (8.9 GB of memory) with nothing in log.txt.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.diffusion.conftest import diffusion_config, draw_shapes
from tests.hostile import within
from tests.trainer.helpers import run_in_process
from trainer.protocol import EXIT_OK, Failed


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_training_names_hostile_captions_and_images_in_the_log(tmp_path, tiny_sd15):
    folder = draw_shapes(tmp_path / "data", 3)
    fifo = folder / "shape-00.txt"
    fifo.unlink()
    os.mkfifo(fifo)
    (folder / "shape-01.txt").write_bytes(b"a red circle " * 100_000)  # 1.3 MB
    os.mkfifo(folder / "pipe.png")
    (folder / "loop.png").symlink_to("loop.png")
    config = diffusion_config(tiny_sd15, folder, training={"steps": 1, "batch_size": 1, "eval_every": 1},
                              sampling={"prompts": [], "at_start": False})
    code, recorder = within(240, lambda: run_in_process(config, tmp_path / "run"), fifos=[fifo, folder / "pipe.png"])
    assert code == EXIT_OK, recorder.of(Failed)
    log = (tmp_path / "run" / "log.txt").read_text(encoding="utf-8")
    assert f"Caption {fifo} is a named pipe (FIFO), not a regular file, so it was not read" in log
    assert (f"Caption {folder / 'shape-01.txt'} is 1.3 MB, over the 64 KiB limit for a caption, so it was not "
            "read; shape-01.png gets the default caption instead") in log
    assert f"Skipping {folder / 'pipe.png'}: {folder / 'pipe.png'}: it is a named pipe (FIFO)" in log
    assert f"Skipping {folder / 'loop.png'}" in log and "symbolic link loop" in log
