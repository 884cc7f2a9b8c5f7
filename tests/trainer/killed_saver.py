"""Child for the Save-now kill test: trains the toy, saves step 5 twice (on schedule, then Save now)
and SIGKILLs itself at the instant the second save's new folder would be renamed into place.

    python -m tests.trainer.killed_saver RUN_DIR

Killing (not raising) matters: no ``except``/``finally`` of the saver runs, as with a real kill -9.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.trainer.helpers import ScriptedCommands, run_in_process, toy_config
from trainer.protocol import SaveNow

KILL_AT_STEP = 5


def config():
    return toy_config(training={"steps": 20, "log_every": 1, "eval_every": 5},
                      output={"run_name": "t", "checkpoint_every": KILL_AT_STEP, "keep_checkpoints": 2})


def main(run_dir: Path) -> None:
    real_replace = os.replace
    staging_moves = 0

    def replace(src, dst, *args, **kwargs):
        nonlocal staging_moves
        if Path(src).name.startswith(f".step-{KILL_AT_STEP:06d}.") and Path(dst).name == f"step-{KILL_AT_STEP:06d}":
            staging_moves += 1
            if staging_moves == 2:  # the Save now: its new folder is complete, about to move in
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace  # every module's os.replace: the saver's own and its helpers'
    run_in_process(config(), run_dir, ScriptedCommands({KILL_AT_STEP: [SaveNow()]}))
    sys.exit("not killed: the second save never moved its folder in")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
