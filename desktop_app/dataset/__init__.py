"""The Dataset page: curation of the images a run learns from, split into small model-first modules.

    model.DatasetModel     the state: entries, captions, crops, removals, findings (one source of truth)
    entries                one image's facts and the concept's settings; the worker-thread reads
    importer               file dialogs and the copy-into-the-project job
    background.Background  the one helper for worker-thread jobs, callbacks on the GUI thread
    thumbnails             lazy thumbnail loading (worker threads) with a disk cache in the project
    grid                   list model, problems filter, tile painter, the QListView (drops too)
    caption_editor         autosaving caption editor with the CLIP token counter
    bulk_bar               bulk caption edits on a selection
    crop_view              the draggable crop rectangle and the training crop it leads to
    buckets_view           which bucket each image lands in (histogram)
    findings_view          health-check findings; a click jumps to the image
    concept_store          the project's concepts and the selected one, read/written whichever config part holds them
    concepts, class_images the concept strip and bar (instance + class set), class-image generation (a task)
    toolbar, toy_note      the grid's buttons; the toy mode note
    panel.DatasetPanel     puts them together (the main window's "Dataset" page)

The Qt-free half (listing, reading, captions, health, buckets, edits, imports) is
``trainer.dataset``: the trainer and ``kamaal-train dataset check`` use the very same code.
"""

from desktop_app.dataset.panel import DatasetPanel

__all__ = ["DatasetPanel"]
