"""What kind of captioner a folder holds, decided from its file names alone (light: the Dataset page asks it to
show the options that fit, before any model loads; ``models.open_captioner`` asks it before loading one)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from trainer.errors import InputError

TAG_FILE = "selected_tags.csv"
MODEL_FIELD = "Captioning model"  # how the Dataset page names the folder in messages (the CLI says --model)
Kind = Literal["tagger", "transformers"]


def captioner_kind(folder: Path, field: str = "--model") -> Kind:
    """``"tagger"`` (an ``.onnx`` model with its ``selected_tags.csv``) or ``"transformers"`` (a ``config.json``);
    ``InputError`` starting with ``field`` and naming the folder when it holds neither, or half a tagger."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{field}: {folder} is not a folder (point to a captioning model's folder)")
    onnx_files = sorted(folder.glob("*.onnx"))
    if onnx_files:
        if not (folder / TAG_FILE).is_file():
            raise InputError(f"{field}: {folder} has {onnx_files[0].name} but no {TAG_FILE} beside it: a WD14 "
                             f"tagger needs its tag list (download both from the model's page)")
        return "tagger"
    if (folder / "config.json").is_file():
        return "transformers"
    raise InputError(f"{field}: {folder} is not a captioner: it has neither a tagger (.onnx with {TAG_FILE}) nor a "
                     "transformers model (config.json); point to the folder that holds one")
