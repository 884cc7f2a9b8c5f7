"""The project's concepts as the Dataset page edits them: which one is selected, and one way to read
and write any concept's fields whichever part of the config holds them.

The first concept lives in ``dataset.*`` (subject) and ``dreambooth.class_*`` (class set), so older
projects and presets stay as they are; further concepts are the ``concepts`` list (one value of
``ConfigModel``: a list of tables).  Widgets ask ``value("repeats")`` of the selected concept and
never need to know which.  Removing a concept only edits the config: its folder stays on disk.
``counts`` holds each concept's image count once the Dataset page has counted it (on a worker
thread), for the strip and the Train page's list of concepts.

GUI thread only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop_app.train.config_model import ConfigModel
from trainer.config import ConceptConfig

CLASS_KEYS = ("class_dir", "class_prompt", "num_class_images")
# A further concept's fields that the first concept keeps in the dataset table (the rest: dreambooth).
SUBJECT_KEYS = ("name", "path", "instance_token", "caption_template", "repeats", "resolution")


class ConceptStore(QObject):
    currentChanged = Signal(int)  # a concept was selected (or the list changed under the selection)
    conceptsChanged = Signal()  # added, removed or renamed: titles and counts to redraw
    fieldsChanged = Signal()  # a field of the selected concept changed (typed here or loaded)
    countsChanged = Signal()  # an image count arrived, or the counts were cleared

    def __init__(self, config: ConfigModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config
        self.current = 0
        self.counts: dict[int, int] = {}  # concept index → usable images, for the concepts counted so far
        config.valueChanged.connect(self._config_changed)

    # ---------------------------------------------------------------- reading

    def count(self) -> int:
        return 1 + len(self._extra())

    def _extra(self) -> list[dict[str, Any]]:
        return list(self.config.value("concepts") or [])

    def field_name(self, key: str, index: int | None = None) -> str:
        """The config field of ``key`` for a concept: ``dataset.repeats`` or ``concepts[0].repeats``."""
        index = self.current if index is None else index
        if index == 0:
            return f"{'dreambooth' if key in CLASS_KEYS else 'dataset'}.{key}"
        return f"concepts[{index - 1}].{key}"

    def value(self, key: str, index: int | None = None) -> Any:
        index = self.current if index is None else index
        if index == 0:
            return self.config.value(self.field_name(key, 0))
        return self._extra()[index - 1][key]

    def resolution(self, index: int | None = None) -> int:
        """The resolution a concept trains at (a further concept's 0 is the dataset's)."""
        return int(self.value("resolution", index) or self.config.value("dataset.resolution"))

    def title(self, index: int) -> str:
        name, path = str(self.value("name", index) or ""), str(self.value("path", index) or "")
        return name or (Path(path).name if path else "") or ("Subject" if index == 0 else f"Concept {index + 1}")

    def titles(self) -> list[str]:
        return [self.title(index) for index in range(self.count())]

    def error(self, key: str) -> str | None:
        """The validation message of the selected concept's ``key`` (further concepts share ``concepts``)."""
        if self.current == 0:
            return self.config.error_for(self.field_name(key))
        message = self.config.error_for("concepts") or ""
        wanted = self.field_name(key)
        return next((part for part in message.split("; ") if part.startswith(wanted + ":")), None)

    def set_count(self, index: int, count: int | None) -> None:
        """Record a concept's image count (``None``: unknown, e.g. its folder is missing)."""
        if count is None:
            changed = self.counts.pop(index, None) is not None
        else:
            changed = self.counts.get(index) != count
            self.counts[index] = count
        if changed:
            self.countsChanged.emit()

    def clear_counts(self) -> None:
        if self.counts:
            self.counts.clear()
            self.countsChanged.emit()

    # ---------------------------------------------------------------- writing

    def set_value(self, key: str, value: Any, index: int | None = None) -> None:
        index = self.current if index is None else index
        if index == 0:
            self.config.set_value(self.field_name(key, 0), value)
        else:
            extra = self._extra()
            extra[index - 1] = {**extra[index - 1], key: value}
            self.config.set_value("concepts", extra)
        if key == "name":
            self.conceptsChanged.emit()

    def select(self, index: int) -> None:
        index = max(0, min(index, self.count() - 1))
        if index != self.current:
            self.current = index
            self.currentChanged.emit(index)

    def add(self, path: str, name: str = "") -> int:
        """A new concept for ``path`` (a folder already in place), selected; returns its index.

        A project whose only concept has no folder yet gets the folder as its first concept.
        """
        if self.count() == 1 and not self.value("path", 0):
            self.config.set_value("dataset.path", path)
            if name:
                self.config.set_value("dataset.name", name)
            index = 0
        else:
            defaults = ConceptConfig(path=path, name=name).model_dump(mode="json")
            # A new concept starts like the first one, except for its folder and name.
            for key in ("instance_token", "caption_template", "repeats"):
                defaults[key] = self.value(key, 0)
            self.config.set_value("concepts", [*self._extra(), defaults])
            index = self.count() - 1
        self.conceptsChanged.emit()
        self.current = -1  # always announce the selection: the folder shown changes
        self.select(index)
        return index

    def remove(self, index: int) -> None:
        """Take a concept out of the project (its files stay).  Removing the first promotes the next;
        removing the only one leaves the project without a folder."""
        extra = self._extra()
        if index == 0 and not extra:
            self.config.set_value("dataset.path", "")
            self.config.set_value("dataset.name", "")
        elif index == 0:
            promoted, extra = extra[0], extra[1:]
            old_resolution = int(self.config.value("dataset.resolution"))
            for entry in extra:  # they followed the dataset's resolution: keep what they had
                if not entry["resolution"]:
                    entry["resolution"] = old_resolution
            self.config.set_value("concepts", extra)
            for key in SUBJECT_KEYS:
                if key != "resolution" or promoted[key]:
                    self.config.set_value(self.field_name(key, 0), promoted[key])
            # Its class set comes along; without one, the removed concept's class set goes with it.
            for key in CLASS_KEYS if promoted["class_dir"] else ("class_dir",):
                self.config.set_value(self.field_name(key, 0), promoted[key])
        else:
            del extra[index - 1]
            self.config.set_value("concepts", extra)
        self.conceptsChanged.emit()
        self.current = -1
        self.select(min(index, self.count() - 1))

    # ---------------------------------------------------------------- following the config

    def _config_changed(self, name: str, _value: object) -> None:
        if name == "concepts":
            if self.current >= self.count():  # a preset with fewer concepts was loaded
                self.current = -1
                self.select(self.count() - 1)
            self.conceptsChanged.emit()
            if self.current > 0:
                self.fieldsChanged.emit()
        elif name in ("dataset.name", "dataset.path"):
            self.conceptsChanged.emit()
            if self.current == 0:
                self.fieldsChanged.emit()
        elif self.current == 0 and name.partition(".")[0] in ("dataset", "dreambooth"):
            self.fieldsChanged.emit()
        elif name == "dataset.resolution":
            self.fieldsChanged.emit()  # further concepts at 0 follow it
