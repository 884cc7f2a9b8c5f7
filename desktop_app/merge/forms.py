"""The Merge page's forms, one per operation: each turns its fields into a ``merge-*`` task's arguments,
says which required field is still empty, and which rows a preview of the result should show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.merge.widgets import LORA_FILTER, PathPicker, WeightedPaths, weight_box

Row = dict[str, Any]


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setProperty("role", "subtle")
    return label


def _combo(items: list[tuple[str, str]]) -> QComboBox:
    box = QComboBox()
    for text, data in items:
        box.addItem(text, data)
    return box


LABEL_WIDTH = 78
DTYPES = [("As the input is stored", "auto"), ("fp16 (half the size)", "fp16"), ("bf16", "bf16"), ("fp32", "fp32")]


class MergeForm(QWidget):
    """One operation's fields.  Subclasses fill ``inputs`` and ``output`` group boxes."""

    title = ""
    description = ""
    task = ""
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.inputs = QFormLayout()
        self.output = QFormLayout()
        for form in (self.inputs, self.output):
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for title, form in (("Inputs", self.inputs), ("Result", self.output)):
            box = QGroupBox(title)
            box.setLayout(form)
            layout.addWidget(box)
        layout.addStretch(1)

    @staticmethod
    def add_row(form: QFormLayout, text: str, widget: QWidget) -> None:
        """A labelled row; labels share one width so both boxes' fields line up."""
        label = QLabel(text)
        label.setFixedWidth(LABEL_WIDTH)
        form.addRow(label, widget)

    def _watch(self, *widgets: QWidget) -> None:
        for widget in widgets:
            for name in ("changed", "currentIndexChanged", "valueChanged", "textChanged"):
                signal = getattr(widget, name, None)
                if signal is not None:
                    signal.connect(lambda *_: self.changed.emit())
                    break

    def args(self) -> dict[str, Any]:
        raise NotImplementedError

    def missing(self) -> str | None:
        """What the user still has to choose before the operation can run, or None."""
        return None

    def preview_rows(self, result: dict[str, Any]) -> list[Row]:
        return []


class FuseForm(MergeForm):
    title = "Fuse a LoRA into a model"
    description = "Bakes the LoRA into the base model's weights (W + strength · ΔW): a model that needs no LoRA."
    task = "merge-fuse-lora"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = PathPicker("model", "Diffusers folder or single file")
        self.lora = PathPicker("file", "LoRA .safetensors (kohya or diffusers)", LORA_FILTER)
        self.strength = weight_box(1.0)
        self.add_row(self.inputs, "Base model", self.model)
        self.add_row(self.inputs, "LoRA", self.lora)
        self.add_row(self.inputs, "Strength", self.strength)
        self.out_dir = PathPicker("folder", "Diffusers folder to create")
        self.out_file = PathPicker("save-file", "Single file for Automatic1111 / ComfyUI")
        self.dtype = _combo(DTYPES)
        self.add_row(self.output, "Folder", self.out_dir)
        self.add_row(self.output, "Single file", self.out_file)
        self.add_row(self.output, "Precision", self.dtype)
        self.output.addRow(_hint("Give a folder, a single file, or both. Flux, Z-Image, Qwen-Image, SD 3.5 and the "
                                 "other transformer families keep their precision; their single file is the family's "
                                 "own (Flux: BFL's), and one given as the base gives a file of the same layout."))
        self._watch(self.model, self.lora, self.strength, self.out_dir, self.out_file, self.dtype)

    def args(self) -> dict[str, Any]:
        return {"model": self.model.path(), "loras": [[self.lora.path(), self.strength.value()]],
                "output_dir": self.out_dir.path(), "output_file": self.out_file.path(),
                "dtype": self.dtype.currentData()}

    def missing(self) -> str | None:
        if not self.model.path():
            return "Choose the base model."
        if not self.lora.path():
            return "Choose the LoRA to fuse."
        if not (self.out_dir.path() or self.out_file.path()):
            return "Choose where to write the fused model."
        return None

    def preview_rows(self, result: dict[str, Any]) -> list[Row]:
        lora = [[self.lora.path(), self.strength.value()]]
        fused = result["outputs"][0]
        return [{"label": "Base", "model": self.model.path()},
                {"label": "Base + LoRA", "model": self.model.path(), "loras": lora},
                {"label": "Fused", "model": fused}]


class LorasForm(MergeForm):
    title = "Merge LoRAs"
    description = ("Exact: ranks are stacked, the result equals applying every LoRA at its weight. "
                   "Compact: the same sum cut to a target rank by SVD; the error is reported.")
    task = "merge-loras"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loras = WeightedPaths()
        self.base = PathPicker("model", "Optional: a base model, to preview the result")
        self.inputs.addRow(self.loras)
        self.add_row(self.inputs, "Preview on", self.base)
        self.mode = _combo([("Exact (stacked ranks)", "exact"), ("Compact (SVD to a rank)", "svd")])
        self.rank = QSpinBox()
        self.rank.setRange(1, 1024)
        self.rank.setValue(16)
        # "": SD 1.x/2.x/SDXL LoRAs in kohya's format, a transformer family's (Flux, Z-Image, Qwen-Image, …) in the
        # layout its inputs have, so whatever loaded them loads the result.
        self.format = _combo([("As the inputs (SD 1.x/2.x/SDXL: kohya)", ""),
                              ("kohya / original layout (ComfyUI, Automatic1111)", "kohya"),
                              ("diffusers", "diffusers")])
        self.out = PathPicker("save-file", "Merged LoRA .safetensors")
        self.add_row(self.output, "Method", self.mode)
        self.add_row(self.output, "Target rank", self.rank)
        self.add_row(self.output, "Format", self.format)
        self.add_row(self.output, "Save as", self.out)
        self.mode.currentIndexChanged.connect(self._show_rank)
        self._show_rank()
        self._watch(self.loras, self.base, self.mode, self.rank, self.format, self.out)  # base: Preview's button

    def _show_rank(self) -> None:
        self.rank.setEnabled(self.mode.currentData() == "svd")

    def args(self) -> dict[str, Any]:
        svd = self.mode.currentData() == "svd"
        return {"loras": [[p, w] for p, w in self.loras.items()], "mode": self.mode.currentData(),
                "rank": self.rank.value() if svd else None, "format": self.format.currentData() or None,
                "output": self.out.path()}

    def missing(self) -> str | None:
        if not self.loras.items():
            return "Add the LoRAs to merge."
        if not self.out.path():
            return "Choose where to save the merged LoRA."
        return None

    def preview_rows(self, result: dict[str, Any]) -> list[Row]:
        base = self.base.path()
        if not base:
            return []
        rows: list[Row] = [{"label": "Base", "model": base}]
        rows += [{"label": f"+ {Path(p).stem} ×{w:g}", "model": base, "loras": [[p, w]]} for p, w in self.loras.items()]
        rows.append({"label": "+ merged", "model": base, "loras": [[result["outputs"][0], 1.0]]})
        return rows


class CheckpointsForm(MergeForm):
    title = "Merge checkpoints"
    description = ("Weighted sum A·(1−α) + B·α, or add difference A + (B − C)·α, of two models of one family "
                   "(SD, SDXL, Flux, Z-Image, Qwen-Image, SD 3.5 …). Works tensor by tensor.")
    task = "merge-checkpoints"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.method = _combo([("Weighted sum: A·(1−α) + B·α", "weighted_sum"),
                              ("Add difference: A + (B − C)·α", "add_difference")])
        self.a = PathPicker("model", "Model A")
        self.b = PathPicker("model", "Model B")
        self.c = PathPicker("model", "Model C (subtracted from B)")
        self.alpha = weight_box(0.5, -1.0, 2.0)
        self.blocks = QLineEdit()
        self.blocks.setPlaceholderText("Optional per-block α, e.g. IN*=0.2, M00=0.5, OUT*=0.8")
        self.blocks.setToolTip("Transformers (Flux, Z-Image, …) name their own blocks: transformer_blocks.*=0.3, "
                               "single_transformer_blocks.2=1 (BFL files: double_blocks.*, single_blocks.*). "
                               "UNet blocks: IN00–IN11, M00, OUT00–OUT11 (SDXL: IN00–IN08, OUT00–OUT08); BASE is the "
                               "text encoders, VAE and embeddings. NAME=VALUE pairs with * globs, later ones win; "
                               "or one number per block in the order BASE, IN…, M00, OUT….")
        self.add_row(self.inputs, "Method", self.method)
        self.add_row(self.inputs, "Model A", self.a)
        self.add_row(self.inputs, "Model B", self.b)
        self.add_row(self.inputs, "Model C", self.c)
        self.add_row(self.inputs, "α", self.alpha)
        self.add_row(self.inputs, "Blocks", self.blocks)
        self.components = _combo([("Every component (shared ones are copied)", "all"),
                                  ("UNet / transformer only (A's text encoders and VAE)", "denoiser")])
        self.components.setToolTip("Fine-tunes usually change only the UNet or transformer. Every component: each one "
                                   "that differs is blended, one identical in all models is copied. Denoiser only: "
                                   "model A's text encoders and VAE are kept as they are.")
        self.add_row(self.inputs, "Merge", self.components)
        self.dtype = _combo([("As model A", ""), ("fp16", "fp16"), ("bf16", "bf16"), ("fp32", "fp32")])
        self.out = PathPicker("save-path", "A .safetensors file (single files) or a folder (diffusers)")
        self.add_row(self.output, "Precision", self.dtype)
        self.add_row(self.output, "Save as", self.out)
        self.method.currentIndexChanged.connect(self._show_c)
        self._show_c()
        self._watch(self.method, self.a, self.b, self.c, self.alpha, self.blocks, self.components, self.dtype,
                    self.out)

    def _show_c(self) -> None:
        needed = self.method.currentData() == "add_difference"
        self.c.setVisible(needed)
        self.inputs.labelForField(self.c).setVisible(needed)

    def args(self) -> dict[str, Any]:
        add = self.method.currentData() == "add_difference"
        return {"method": self.method.currentData(), "a": self.a.path(), "b": self.b.path(),
                "c": self.c.path() if add else None, "alpha": self.alpha.value(),
                "block_weights": self.blocks.text().strip(), "components": self.components.currentData(),
                "dtype": self.dtype.currentData() or None, "output": self.out.path()}

    def missing(self) -> str | None:
        if not (self.a.path() and self.b.path()):
            return "Choose models A and B."
        if self.method.currentData() == "add_difference" and not self.c.path():
            return "Choose model C."
        if not self.out.path():
            return "Choose where to save the merged model."
        return None

    def preview_rows(self, result: dict[str, Any]) -> list[Row]:
        rows = [{"label": "A", "model": self.a.path()}, {"label": "B", "model": self.b.path()}]
        if self.method.currentData() == "add_difference":
            rows.append({"label": "C", "model": self.c.path()})
        return [*rows, {"label": "Merged", "model": result["outputs"][0]}]


class ConvertLoraForm(MergeForm):
    title = "Convert a LoRA"
    description = ("Between kohya's format (Automatic1111, ComfyUI; for Flux, Qwen-Image and the other transformer "
                   "families their original layout) and diffusers'. The effect is unchanged.")
    task = "merge-convert-lora"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = PathPicker("file", "LoRA .safetensors", LORA_FILTER)
        self.add_row(self.inputs, "LoRA", self.source)
        self.to = _combo([("The other format", ""), ("kohya", "kohya"), ("diffusers", "diffusers")])
        self.out = PathPicker("save-file", "Converted LoRA .safetensors")
        self.add_row(self.output, "Convert to", self.to)
        self.add_row(self.output, "Save as", self.out)
        self._watch(self.source, self.to, self.out)

    def args(self) -> dict[str, Any]:
        return {"lora": self.source.path(), "to": self.to.currentData() or None, "output": self.out.path()}

    def missing(self) -> str | None:
        return None if self.source.path() and self.out.path() else "Choose the LoRA and where to save it."


class ConvertModelForm(MergeForm):
    title = "Convert a model"
    description = ("A diffusers folder to one .safetensors checkpoint (Automatic1111, ComfyUI; Flux, SD 3.5 and the "
                   "other transformer families: the family's own file, as a training run writes it), or back.")
    task = "merge-convert-model"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = PathPicker("model", "Diffusers folder or .safetensors / .ckpt")
        self.add_row(self.inputs, "Model", self.source)
        self.encoders = PathPicker("files", "Text encoder files, for a file holding only the transformer")
        self.vae = PathPicker("file", "VAE file, for a file holding only the transformer")
        self.add_row(self.inputs, "Encoders", self.encoders)
        self.add_row(self.inputs, "VAE file", self.vae)
        self.inputs.addRow(_hint("Left empty, they are found in ComfyUI's models/clip (or text_encoders) and "
                                 "models/vae beside the file, as training finds them."))
        self.dtype = _combo(DTYPES)
        self.out = PathPicker("save-path", "OUT.safetensors, or a folder to create")
        self.add_row(self.output, "Precision", self.dtype)
        self.add_row(self.output, "Save as", self.out)
        self._watch(self.source, self.encoders, self.vae, self.dtype, self.out)

    def args(self) -> dict[str, Any]:
        encoders = [part.strip() for part in self.encoders.path().split(";") if part.strip()]
        return {"model": self.source.path(), "output": self.out.path(), "dtype": self.dtype.currentData(),
                "text_encoder_files": encoders, "vae_file": self.vae.path()}

    def missing(self) -> str | None:
        return None if self.source.path() and self.out.path() else "Choose the model and where to save it."

    def preview_rows(self, result: dict[str, Any]) -> list[Row]:
        return [{"label": "Original", "model": self.source.path()},
                {"label": "Converted", "model": result["outputs"][0]}]


FORMS: list[type[MergeForm]] = [FuseForm, LorasForm, CheckpointsForm, ConvertLoraForm, ConvertModelForm]
