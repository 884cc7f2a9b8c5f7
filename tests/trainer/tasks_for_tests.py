"""Tasks that exist only for the tests of the task runner (named by "module:function" target)."""

from __future__ import annotations

import os
import time

from trainer.errors import InputError
from trainer.tasks.runner import TaskContext


def count(args: dict, context: TaskContext) -> dict:
    total = int(args["n"])
    for done in range(1, total + 1):
        context.check_cancelled()
        time.sleep(float(args.get("delay_s", 0)))
        context.progress(done, total, f"counted {done}")
    context.log("counted them all")
    return {"counted": total, "echo": args.get("echo")}


def refuse(args: dict, context: TaskContext) -> dict:
    raise InputError(f"dataset.path: {args['path']} does not exist")


def bug(args: dict, context: TaskContext) -> dict:
    return {"ratio": 1 / int(args.get("zero", 0))}


def die(args: dict, context: TaskContext) -> dict:
    context.progress(0, 1, "about to die")
    time.sleep(0.2)  # let the progress event reach the pipe
    os._exit(7)
