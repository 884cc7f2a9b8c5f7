"""Stable Diffusion training pieces (heavy: torch, diffusers, peft).

``components`` loads a base model, ``text`` encodes prompts per model family, ``data`` turns a
dataset folder into bucketed, optionally cached batches, ``loss`` is the denoising objective,
``sampling`` draws preview images.  ``trainer/jobs/diffusion.py`` puts them together.
"""
