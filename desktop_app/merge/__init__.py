"""The Merge page: fuse a LoRA into a model, merge LoRAs, merge checkpoints, convert formats, then
preview the result beside its inputs.

The work runs in a trainer process through the ``merge-*`` tasks (``trainer/merge/tasks.py``); this
package never imports the merge code itself (no torch in the GUI process).
"""

from desktop_app.merge.panel import MergePanel

__all__ = ["MergePanel"]
