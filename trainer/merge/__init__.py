"""Model merging: fuse a LoRA into a base model, merge LoRAs, merge checkpoints, convert formats.

Heavy (torch): only the trainer process and ``kamaal-train merge`` import the modules below; the GUI
reaches them through the ``merge-*`` task names (``trainer.merge.tasks``).

    outputs  – output-path guards, atomic file/folder publishing, provenance metadata
    stream   – a safetensors writer that takes one tensor at a time (bounded memory)
    sources  – lazy tensor access to single files and diffusers folders
    blocks   – UNet block names (BASE, IN00…, M00, OUT00…) and per-block weights
    checkpoints – weighted sum and add-difference merges, with compatibility checks
    lora_files, lora_merge – LoRA reading/writing (kohya and diffusers) and merging (exact, SVD)
    fuse     – a LoRA baked into a base model
    convert  – diffusers folder ↔ single file
    preview  – sample images of inputs and result with fixed prompts and seeds
    tasks, cli – the GUI's tasks and ``kamaal-train merge``
"""
