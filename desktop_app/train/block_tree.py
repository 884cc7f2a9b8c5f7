"""The frozen-layer block tree: the model's blocks with checkboxes and parameter counts.

The tree comes from the real model, inspected in a trainer process (task ``model-blocks``: the toy
network's layers, or a Stable Diffusion model's UNet and text encoder blocks, three levels deep).
Ticking a block adds its name to ``frozen.trainable``; unticking removes it (a ticked parent is
split into its other children).  Glob patterns typed into the field (``*attn2*``) stay as they are
and tick what they match.  Frozen-layer runs train UNet blocks only, so text-encoder blocks are
shown for their sizes but cannot be ticked.

Threads: GUI thread; the model is loaded in a trainer process through :class:`TaskRunner`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.tasks import TaskRunner
from desktop_app.train.config_model import ConfigModel
from trainer.families import is_toy
from trainer.memory_estimate import parameters_from_blocks
from trainer.protocol import Failed, TaskDone

TRAINABLE_COMPONENTS = {"unet", "network"}
VISIBLE_ROWS_MAX = 14
COMPONENT_TITLES = {"unet": "UNet", "text_encoder": "Text encoder", "text_encoder_2": "Text encoder 2",
                    "network": "Toy network"}


def matches(block: str, pattern: str) -> bool:
    """As ``trainer.freezing.pattern_matches``: the block itself, or anything inside it."""
    return fnmatchcase(block, pattern) or fnmatchcase(block, pattern + ".*")


def millions(count: int) -> str:
    return f"{count / 1e6:,.1f} M" if count >= 100_000 else f"{count:,}"


class BlockTree(QWidget):
    countsChanged = Signal(object, object)  # parameters by component, trainable count (or None)

    def __init__(self, model: ConfigModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("blockTree")
        self.model = model
        self.blocks: dict[str, list[dict]] = {}
        self.inspected: tuple[str, str] | None = None  # (architecture, model path) the tree shows
        self.runner = TaskRunner(self)
        self.runner.done.connect(self._on_blocks)
        self.runner.failed.connect(self._on_failed)
        self.tree = QTreeWidget()
        self.tree.setObjectName("blockTreeView")
        self.tree.setHeaderLabels(["Block", "Parameters"])
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemExpanded.connect(lambda _item: self._fit_height())
        self.tree.itemCollapsed.connect(lambda _item: self._fit_height())
        self._fit_height()
        self.tree.itemChanged.connect(self._on_item_changed)
        self.summary = QLabel("Read the blocks of the base model to pick them here.")
        self.summary.setObjectName("blockSummary")
        self.summary.setWordWrap(True)
        self.summary.setProperty("role", "subtle")
        self.inspect_button = QPushButton("Read blocks")
        self.inspect_button.setObjectName("inspectBlocksButton")
        self.inspect_button.setToolTip("Load the base model in a trainer process and list its blocks")
        self.inspect_button.clicked.connect(self.inspect)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.inspect_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.tree)
        model.valueChanged.connect(self._on_value_changed)

    def inspect(self) -> bool:
        if self.runner.is_busy():
            return False
        architecture = str(self.model.value("model.architecture"))
        path = str(self.model.value("model.path"))
        if not is_toy(architecture) and not path:
            self.summary.setText("Choose the base weights (Model) first.")
            return False
        self.summary.setText("Reading the model's blocks…")
        self.inspect_button.setEnabled(False)
        self.inspected = (architecture, path)
        # A single-file base whose text encoders and VAE are files of their own (Flux) needs those too.
        return self.runner.start("model-blocks", {
            "architecture": architecture, "model": path, "depth": 3,
            "text_encoder_files": [str(p) for p in self.model.value("model.text_encoder_files") or []],
            "vae_file": str(self.model.value("model.vae_file") or ""),
            "tokenizer_folder": str(self.model.value("model.tokenizer_folder") or "")})

    def shutdown(self) -> None:
        self.runner.close()

    def showEvent(self, event: QShowEvent) -> None:
        """Read the blocks the first time the tree is seen (the person came to pick blocks)."""
        super().showEvent(event)
        if self.inspected is None and not self.runner.is_busy():
            self.inspect()

    # ------------------------------------------------------------------ building

    def _on_blocks(self, event: TaskDone) -> None:
        self.inspect_button.setEnabled(True)
        self.blocks = dict(event.result["blocks"])
        self.tree.blockSignals(True)
        self.tree.clear()
        for component, rows in self.blocks.items():
            top = QTreeWidgetItem([COMPONENT_TITLES.get(component, component),
                                   millions(sum(r["parameters"] for r in rows if "." not in r["block"]))])
            top.setData(0, Qt.ItemDataRole.UserRole, None)
            self.tree.addTopLevelItem(top)
            items: dict[str, QTreeWidgetItem] = {}
            for row in rows:
                block = row["block"]
                parent = items.get(block.rpartition(".")[0], top)
                item = QTreeWidgetItem(parent, [block.rpartition(".")[2] if parent is not top else block,
                                                millions(row["parameters"])])
                item.setData(0, Qt.ItemDataRole.UserRole, block if component in TRAINABLE_COMPONENTS else None)
                item.setData(1, Qt.ItemDataRole.UserRole, row["parameters"])
                item.setToolTip(0, block)
                if component in TRAINABLE_COMPONENTS:
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                else:
                    item.setDisabled(True)
                    item.setToolTip(0, f"{block}: frozen-layer runs train UNet blocks only")
                items[block] = item
            top.setExpanded(component in TRAINABLE_COMPONENTS)
        self.tree.blockSignals(False)
        self._fit_height()
        self._show_patterns()

    def _fit_height(self) -> None:
        """As tall as the open rows (the toy network's four), up to about fourteen; then it scrolls."""
        rows = 0
        iterator = self.tree.topLevelItem(0)
        while iterator is not None and rows < VISIBLE_ROWS_MAX:
            rows += 1
            iterator = self.tree.itemBelow(iterator)
        row_height = self.tree.fontMetrics().height() + 6
        self.tree.setFixedHeight(self.tree.header().sizeHint().height() + max(rows, 3) * row_height + 6)

    def _on_failed(self, event: Failed) -> None:
        self.inspect_button.setEnabled(True)
        self.inspected = None
        self.summary.setText(f"Could not read the blocks: {event.message}")

    def _items(self) -> list[QTreeWidgetItem]:
        found, stack = [], [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        while stack:
            item = stack.pop()
            found.append(item)
            stack.extend(item.child(i) for i in range(item.childCount()))
        return found

    def patterns(self) -> list[str]:
        return [str(p) for p in self.model.value("frozen.trainable")]

    def _show_patterns(self) -> None:
        """Tick what the patterns train; count it; tell the memory estimate."""
        patterns = self.patterns()
        trainable, total = 0, 0
        self.tree.blockSignals(True)
        for item in self._items():
            block = item.data(0, Qt.ItemDataRole.UserRole)
            if block is None:
                continue
            on = any(matches(block, p) for p in patterns)
            inside = any(p.startswith(block + ".") for p in patterns)
            item.setCheckState(0, Qt.CheckState.Checked if on else
                               Qt.CheckState.PartiallyChecked if inside else Qt.CheckState.Unchecked)
            if item.childCount() == 0:  # leaves partition the parameters: count each once
                total += int(item.data(1, Qt.ItemDataRole.UserRole))
                trainable += int(item.data(1, Qt.ItemDataRole.UserRole)) if on else 0
        self.tree.blockSignals(False)
        self.trainable_count = trainable
        if total:
            self.summary.setText(f"Training <b>{millions(trainable)}</b> of {millions(total)} parameters "
                                 f"({100 * trainable / total:.1f} %); the rest stay frozen.")
            self.countsChanged.emit(parameters_from_blocks(self.blocks), trainable)

    # ------------------------------------------------------------------ editing

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        block = item.data(0, Qt.ItemDataRole.UserRole)
        if column != 0 or block is None:
            return
        patterns = self.patterns()
        if item.checkState(0) == Qt.CheckState.Checked:
            patterns = [p for p in patterns if not p.startswith(block + ".")] + [block]
        else:
            patterns = [p for p in patterns if p != block and not p.startswith(block + ".")]
            ancestor = item.parent()
            while ancestor is not None and ancestor.data(0, Qt.ItemDataRole.UserRole) is not None:
                name = ancestor.data(0, Qt.ItemDataRole.UserRole)
                if name in patterns:  # split the ticked parent into its other children
                    patterns.remove(name)
                    patterns += self._children_except(ancestor, block)
                ancestor = ancestor.parent()
        self.model.set_value("frozen.trainable", patterns)

    def _children_except(self, parent: QTreeWidgetItem, block: str) -> list[str]:
        names = []
        for i in range(parent.childCount()):
            child = parent.child(i)
            name = child.data(0, Qt.ItemDataRole.UserRole)
            if name == block:
                continue
            if block.startswith(name + "."):
                names += self._children_except(child, block)
            else:
                names.append(name)
        return names

    def _on_value_changed(self, name: str, _value: object) -> None:
        if name == "frozen.trainable":
            self._show_patterns()
        elif name in ("model.path", "model.architecture", "model.text_encoder_files", "model.vae_file",
                      "model.tokenizer_folder") \
                and self.inspected is not None:
            self.tree.clear()
            self.blocks, self.inspected = {}, None
            self.summary.setText("The base model changed: read its blocks again.")
