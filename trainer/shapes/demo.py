"""The demo's pictures: the instance set of the new concept, and ordinary shapes for prior preservation.

    python -m trainer.shapes.demo resources/demo

writes ``dataset/`` (six pictures of the "sks" shape — a red ring around a blue square, which the
shapes model never saw — captioned "a sks shape") and ``class_images/`` (twelve ordinary world
pictures captioned "a shape"), the same bytes every time.  ``resources/presets/demo.toml`` trains a
DreamBooth-LoRA on them; with every class image already there, the run generates none and never
writes into ``resources/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainer.shapes.world import world_samples, write_captioned, write_demo_dataset

INSTANCE_PROMPT = "a sks shape"
CLASS_PROMPT = "a shape"
INSTANCE_COUNT = 6
CLASS_COUNT = 12
CLASS_SEED = 7  # not the model's training seed: these exact pictures were never trained on


def write_demo_files(root: Path) -> list[Path]:
    """Write (or rewrite) ``root/dataset`` and ``root/class_images``; returns the image paths."""
    instances = write_demo_dataset(root / "dataset", INSTANCE_COUNT, seed=0, caption=INSTANCE_PROMPT)
    ordinary = [(image, CLASS_PROMPT) for image, _, _ in world_samples(CLASS_COUNT, seed=CLASS_SEED)]
    return instances + write_captioned(root / "class_images", ordinary, "shape")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trainer.shapes.demo OUT_DIR   (the shipped one is resources/demo)", file=sys.stderr)
        return 2
    paths = write_demo_files(Path(args[0]))
    print(f"wrote {len(paths)} pictures under {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
