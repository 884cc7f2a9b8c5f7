"""Short jobs that run in a trainer process, outside any training run: the task registry.

A *task* is work the GUI must not do itself because it needs torch (inspect a model's blocks,
generate class images, merge models, measure memory): it runs in a spawn child exactly like a
training run, reports :class:`~trainer.protocol.TaskProgress` and ends with
:class:`~trainer.protocol.TaskDone` or :class:`~trainer.protocol.Failed`.  A ``Stop`` command
cancels it at the task's next check.

The registry maps a task name to ``"module:function"``; the module is imported only in the child,
so this file (imported by the GUI through :mod:`trainer.process`) stays light.  A task function is
``fn(args: dict, context: TaskContext) -> dict`` — plain data in, plain data out.
"""

from __future__ import annotations

TASKS: dict[str, str] = {
    "inspect-blocks": "trainer.tasks.builtin:inspect_blocks",
}


def register(name: str, target: str) -> None:
    """Add a task (``target`` is ``"package.module:function"``); for features that live in their own rooms."""
    TASKS[name] = target
