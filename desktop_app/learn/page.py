"""The Learn page: the guide's lessons, each a short text beside a live experiment, in English or Hinglish.

Left, the lessons and the language switch; in the middle, the lesson's Markdown (rendered by Qt's
``QTextBrowser``) and its "Do this on your own model" button; right, the experiment.  Experiments are built
the first time their lesson is shown (the training lessons start a trainer process only when asked).

Switching the language installs that language's translator (:mod:`desktop_app.learn.i18n`), which sends a
LanguageChange to every widget: the page then redraws its marked strings and reloads the lesson's text.  The
choice is remembered in the app's settings.  GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_app import paths
from desktop_app.learn.i18n import LANGUAGES, current_language, install_language, save_language, saved_language, tr
from desktop_app.learn.lessons import LESSONS, Lesson, lesson_text
from desktop_app.learn.toy_math import ToyWeights


class LearnPage(QWidget):
    presetRequested = Signal(str)  # "Do this on your own model": a preset's name, for the Train page
    mergePageRequested = Signal()  # the merging lesson's "Do this": the Merge page
    titleChanged = Signal(str)  # the page's name in the current language (for its tab)

    def __init__(self, parent: QWidget | None = None) -> None:
        self.language = saved_language()
        if current_language() != self.language:  # before any widget exists: no LanguageChange to answer yet
            install_language(self.language)
        super().__init__(parent)
        self.setObjectName("learnPage")
        self.network = ToyWeights.load(paths.resources_dir() / "models" / "toy-pretrained.safetensors")
        self.experiments: dict[str, QWidget] = {}

        self.heading = QLabel()
        self.heading.setProperty("role", "panelTitle")
        self.language_label = QLabel()
        self.language_box = QComboBox()
        self.language_box.setObjectName("learnLanguage")
        for code, name in LANGUAGES.items():
            self.language_box.addItem(name, code)
        self.language_box.setCurrentIndex(self.language_box.findData(self.language))
        self.language_box.currentIndexChanged.connect(
            lambda index: self.set_language(str(self.language_box.itemData(index))))
        self.lesson_list = QListWidget()
        self.lesson_list.setObjectName("lessonList")
        self.lesson_list.addItems(["" for _ in LESSONS])
        self.lesson_list.setFixedWidth(210)
        self.lesson_list.currentRowChanged.connect(self.show_lesson)
        left = QVBoxLayout()
        left.addWidget(self.heading)
        language_row = QHBoxLayout()
        language_row.addWidget(self.language_label)
        language_row.addWidget(self.language_box, 1)
        left.addLayout(language_row)
        left.addWidget(self.lesson_list, 1)

        self.text = QTextBrowser()
        self.text.setObjectName("lessonText")
        self.text.setOpenExternalLinks(False)
        self.text.setMinimumWidth(360)
        self.text.document().setDocumentMargin(10)
        self.own_model_button = QPushButton()
        self.own_model_button.setObjectName("ownModelButton")
        self.own_model_button.clicked.connect(self._do_it_yourself)
        middle = QVBoxLayout()
        middle.addWidget(self.text, 1)
        middle.addWidget(self.own_model_button)

        self.experiment_title = QLabel()
        self.experiment_title.setProperty("role", "panelTitle")
        self.stack = QStackedWidget()
        right = QVBoxLayout()
        right.addWidget(self.experiment_title)
        right.addWidget(self.stack, 1)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(left)
        layout.addLayout(middle, 5)
        layout.addLayout(right, 7)
        self.retranslate()
        self.lesson_list.setCurrentRow(0)

    # ------------------------------------------------------------------ lessons

    @property
    def lesson(self) -> Lesson:
        return LESSONS[max(self.lesson_list.currentRow(), 0)]

    def experiment(self, name: str) -> QWidget:
        """The lesson ``name``'s experiment, built now if it was not yet."""
        if name not in self.experiments:
            widget = self._factories()[name]()
            self.experiments[name] = widget
            self.stack.addWidget(widget)
        return self.experiments[name]

    def _factories(self) -> dict[str, Callable[[], QWidget]]:
        from desktop_app.learn.dreambooth_lesson import DreamBoothLesson
        from desktop_app.learn.lora_lesson import LoraLesson
        from desktop_app.learn.merge_lesson import MergeLesson
        from desktop_app.learn.neuron_lesson import NeuronLesson
        from desktop_app.learn.run_lessons import FreezingLesson, TrainingLesson

        return {"weights": lambda: NeuronLesson(self.network), "training": TrainingLesson,
                "freezing": FreezingLesson, "lora": lambda: LoraLesson(self.network),
                "dreambooth": DreamBoothLesson, "merging": lambda: MergeLesson(self.network)}

    def show_lesson(self, row: int) -> None:
        if row < 0:
            return
        lesson = LESSONS[row]
        self.text.setMarkdown(lesson_text(lesson, self.language))
        self.experiment_title.setText(tr("Experiment: {title}").format(title=tr(lesson.title)))
        self.stack.setCurrentWidget(self.experiment(lesson.name))
        self.own_model_button.setToolTip(
            tr("Opens the preset “{preset}” on the Train page").format(preset=lesson.preset)
            if lesson.preset else tr("Opens the Merge page"))

    def _do_it_yourself(self) -> None:
        if self.lesson.preset:
            self.presetRequested.emit(self.lesson.preset)
        else:
            self.mergePageRequested.emit()

    # ------------------------------------------------------------------ language

    def set_language(self, language: str) -> None:
        """Switch the lessons and the marked interface strings to ``language`` and remember it."""
        if language not in LANGUAGES:
            return
        self.language = language
        save_language(language)
        self.language_box.setCurrentIndex(self.language_box.findData(language))
        install_language(language)  # a LanguageChange reaches changeEvent (nothing changes if no .qm exists)
        self.retranslate()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()
        super().changeEvent(event)

    def retranslate(self) -> None:
        self.heading.setText(tr("Learn"))
        self.titleChanged.emit(tr("Learn"))
        self.language_label.setText(tr("Language"))
        for row, lesson in enumerate(LESSONS):
            self.lesson_list.item(row).setText(lesson.display_title())
        self.own_model_button.setText(tr("Do this on your own model →"))
        for widget in self.experiments.values():
            widget.retranslate()  # type: ignore[attr-defined]
        if self.lesson_list.currentRow() >= 0:
            self.show_lesson(self.lesson_list.currentRow())

    def shutdown(self) -> None:
        """Stop any lesson run (the window is closing)."""
        for widget in self.experiments.values():
            runner = getattr(widget, "runner", None)
            if runner is not None:
                runner.shutdown()
