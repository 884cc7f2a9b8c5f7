"""The Learn page's lessons: their order, titles, text files and the preset each one leads to.

A lesson's text is Markdown, one file per language: ``resources/lessons/<language>/NN-name.md``
(``en``, ``hi-Latn``).  Titles are marked strings (translated with the interface); the experiment
beside the text is built by the page from the lesson's ``experiment`` name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from desktop_app import paths
from desktop_app.learn.i18n import SOURCE_LANGUAGE, marked, tr


@dataclass(frozen=True)
class Lesson:
    number: int
    name: str  # the file's name after its number, and the experiment's
    title: str  # English source, marked; shown through tr()
    preset: str  # what "Do this on your own model" opens on the Train page ("" for the Merge page)

    @property
    def file_name(self) -> str:
        return f"{self.number:02d}-{self.name}.md"

    def display_title(self) -> str:
        return f"{self.number}. {tr(self.title)}"


LESSONS = (
    Lesson(1, "weights", marked("Weight, layer, bias"), "toy"),
    Lesson(2, "training", marked("Training"), "toy"),
    Lesson(3, "freezing", marked("Fine-tuning by freezing"), "toy-frozen"),
    Lesson(4, "lora", marked("LoRA"), "sd15-lora-8gb"),
    Lesson(5, "dreambooth", marked("DreamBooth"), "demo"),
    Lesson(6, "merging", marked("Merging"), ""),
)


def lessons_dir() -> Path:
    return paths.resources_dir() / "lessons"


def lesson_text(lesson: Lesson, language: str) -> str:
    """The lesson's Markdown in ``language`` (English if that language has no file for it)."""
    for folder in (language, SOURCE_LANGUAGE):
        file = lessons_dir() / folder / lesson.file_name
        if file.is_file():
            return file.read_text(encoding="utf-8")
    return f"*{lesson.file_name} is missing from {lessons_dir()}*"
