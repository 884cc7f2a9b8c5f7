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
    "generate-class-images": "trainer.tasks.class_images:generate_class_images",
    "model-blocks": "trainer.tasks.measure:model_blocks",
    "device-info": "trainer.tasks.measure:device_info",
    "measure": "trainer.tasks.measure:measure",
    "caption-images": "trainer.captioning.task:caption_images_task",
    # Model merging (trainer/merge/tasks.py)
    "merge-fuse-lora": "trainer.merge.tasks:fuse_lora_task",
    "merge-loras": "trainer.merge.tasks:merge_loras_task",
    "merge-checkpoints": "trainer.merge.tasks:merge_checkpoints_task",
    "merge-convert-lora": "trainer.merge.tasks:convert_lora_task",
    "merge-convert-model": "trainer.merge.tasks:convert_model_task",
    "merge-preview": "trainer.merge.tasks:preview_task",
}


def register(name: str, target: str) -> None:
    """Add a task (``target`` is ``"package.module:function"``); for features that live in their own rooms."""
    TASKS[name] = target
