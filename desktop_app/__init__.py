"""Kamaal's desktop app (PySide6).  Never imports torch, diffusers, transformers, peft, accelerate or safetensors.

This package's ``__init__`` and ``launcher`` stay free of Qt at module level: the trainer's spawn
child re-imports the parent's main module, and must not load Qt.
"""
