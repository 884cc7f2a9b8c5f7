"""The Dataset page: curation of the images a run learns from, split into small model-first modules.

    model.DatasetModel     the state: entries, captions, crops, removals, findings (one source of truth)
    entries                one image's facts and the concept's settings; the worker-thread reads
    importer               file dialogs and the copy-into-the-project job
    processes.Processes    the heavy reads (listing, sizes, health check, thumbnails, import) in worker
                           processes, callbacks on the GUI thread; worker: the child's loop; jobs: the work
    background.Background  the same for light in-process work on threads (caption writes, the tokenizer)
    thumbnails             lazy thumbnail loading (worker processes) with a disk cache in the project
    grid                   list model, problems filter, tile painter, the QListView (drops too)
    caption_editor         autosaving caption editor with the CLIP token counter
    bulk_bar               bulk caption edits on a selection
    auto_caption, caption_dialog  "Caption images…": a local model's captions (the caption-images task) applied
                           as edits, preview, cancel, one undo per batch; the dialog
    crop_view              the draggable crop rectangle and the training crop it leads to
    buckets_view           which bucket each image lands in (histogram)
    findings_view          health-check findings; a click jumps to the image
    pair_view, pair_dialog before/after pairs: the selected pair above its caption (control slots take drops);
                           the question two dropped images ask (one pair, or two images?)
    concept_store          the project's concepts and the selected one, read/written whichever config part holds them
    concepts, class_images the concept strip and bar (instance + class set), class-image generation (a task)
    toolbar, toy_note      the grid's buttons; the toy mode note
    panel.DatasetPanel     puts them together (the main window's "Dataset" page)

``worker``, ``jobs`` and ``entries`` are Qt-free, and this ``__init__`` imports nothing at module
level, so a worker process can import them.  The Qt-free half (listing, reading, captions, health,
buckets, edits, imports) is ``trainer.dataset``: the trainer and ``kamaal-train dataset check``
use the very same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from desktop_app.dataset.panel import DatasetPanel

__all__ = ["DatasetPanel"]


def __getattr__(name: str) -> Any:
    """``DatasetPanel`` on first use: a worker process imports ``desktop_app.dataset.worker`` and ``jobs``
    through this package and must not load Qt."""
    if name == "DatasetPanel":
        from desktop_app.dataset.panel import DatasetPanel

        return DatasetPanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
