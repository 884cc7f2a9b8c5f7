"""A stand-in for the GUI process: starts a long toy run, prints the trainer's pid, then waits.

The parent-death test SIGKILLs this process and checks that the trainer exits by itself.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.trainer.helpers import toy_config
from trainer.process import TrainerProcess
from trainer.runfolder import RunFolder

if __name__ == "__main__":
    run_dir = Path(sys.argv[1])
    RunFolder.create(toy_config(training={"steps": 1_000_000}, toy={"samples": 256, "step_delay_ms": 2}), run_dir)
    trainer = TrainerProcess(run_dir)
    trainer.start()
    print(trainer.pid, flush=True)
    while True:
        trainer.poll_events()
        time.sleep(0.1)
