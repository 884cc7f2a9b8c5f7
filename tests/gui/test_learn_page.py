"""The Learn page in the window, and its two languages: complete, switchable, remembered, built by Qt's tools."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from desktop_app import paths
from desktop_app.learn import i18n
from desktop_app.learn.lessons import LESSONS, lessons_dir
from tests.conftest import REPO

LEARN_CODE = REPO / "desktop_app" / "learn"
# The Train page's widgets that lessons 2 and 3 show: their strings are marked too (Makefile's update-translations).
TRANSLATED_ELSEWHERE = [REPO / "desktop_app" / "preview" / name for name in ("loss_plot.py", "weights_view.py")]
TS_FILES = sorted((REPO / "resources" / "i18n").glob("*.ts"))
PLACEHOLDER = re.compile(r"\{\w*\}")


def marked_strings() -> set[str]:
    """Every literal passed to tr("…") or marked("…") in the Learn page's code and the widgets it shares with the
    Train page (what lupdate extracts)."""
    found = set()
    for path in [*LEARN_CODE.glob("*.py"), *TRANSLATED_ELSEWHERE]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("tr", "marked")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value)
    return found


def translations(ts: Path) -> dict[str, ET.Element]:
    return {message.findtext("source"): message.find("translation")
            for message in ET.parse(ts).getroot().iter("message")}


@pytest.fixture
def hinglish_qm(tmp_path, monkeypatch) -> Path:
    """The Hinglish .ts compiled by PySide6's lrelease (as `make translations` does) into a temporary folder."""
    lrelease = shutil.which("pyside6-lrelease", path=str(Path(sys.executable).parent))
    assert lrelease, "pyside6-lrelease is missing from the environment"
    folder = tmp_path / "i18n"
    folder.mkdir()
    qm = folder / "kamaal_hi-Latn.qm"
    subprocess.run([lrelease, "-silent", str(REPO / "resources" / "i18n" / "kamaal_hi-Latn.ts"), "-qm", str(qm)],
                   check=True, timeout=60)
    monkeypatch.setattr(i18n, "i18n_dir", lambda: folder)
    yield qm
    i18n.install_language(i18n.SOURCE_LANGUAGE)  # the next test starts in English


def test_every_lesson_has_its_text_in_every_language():
    assert set(i18n.LANGUAGES) == {path.name for path in lessons_dir().iterdir() if path.is_dir()}
    for language in i18n.LANGUAGES:
        for lesson in LESSONS:
            file = lessons_dir() / language / lesson.file_name
            assert file.is_file(), f"missing {file}"
            text = file.read_text(encoding="utf-8")
            assert text.startswith("# ") and len(text.split()) > 80, f"{file} is empty or a stub"
    english = (lessons_dir() / "en" / "01-weights.md").read_text(encoding="utf-8")
    hinglish = (lessons_dir() / "hi-Latn" / "01-weights.md").read_text(encoding="utf-8")
    assert english != hinglish and "cycle" in hinglish and "handle" in hinglish  # the guide's own metaphor


def test_every_marked_string_is_translated_in_every_ts_file():
    strings = marked_strings()
    assert len(strings) > 50 and "Do this on your own model →" in strings  # the scan sees the page
    assert TS_FILES, "no .ts sources under resources/i18n"
    for ts in TS_FILES:
        known = translations(ts)
        missing = sorted(strings - known.keys())
        assert not missing, f"{ts.name}: not in the .ts (run make update-translations): {missing}"
        for source in strings:
            translation = known[source]
            assert translation.get("type") not in ("unfinished", "obsolete") and (translation.text or "").strip(), \
                f"{ts.name}: untranslated: {source!r}"
            assert sorted(PLACEHOLDER.findall(translation.text)) == sorted(PLACEHOLDER.findall(source)), \
                f"{ts.name}: placeholders differ in {source!r}"


def test_the_language_switch_translates_the_page_and_is_remembered(qtbot, hinglish_qm):
    from desktop_app.learn.page import LearnPage

    page = LearnPage()
    qtbot.addWidget(page)
    assert page.heading.text() == "Learn" and page.own_model_button.text().startswith("Do this")
    page.language_box.setCurrentIndex(page.language_box.findData("hi-Latn"))  # as a person picks it
    assert i18n.current_language() == "hi-Latn" and i18n.saved_language() == "hi-Latn"
    assert page.heading.text() == "Seekho" and page.own_model_button.text() == "Apne model pe yeh karo →"
    assert "bina handle ke cycle" in page.text.toPlainText()
    page.lesson_list.setCurrentRow(2)
    assert "Freezing se finetuning" in page.experiment_title.text()
    assert page.experiments["freezing"].start_button.text() == "Teeno experiments chalao"
    freezing = page.experiments["freezing"]  # the Train page's plots, shown by the lesson, follow the language
    assert "smooth kiya hua" in freezing.loss_plot.legend.text()
    assert freezing.weights_view.empty_hint.text().startswith("Training shuru hote hi")
    again = LearnPage()  # a later start: the remembered language
    qtbot.addWidget(again)
    assert again.language_box.currentData() == "hi-Latn" and again.heading.text() == "Seekho"
    page.set_language("en")
    assert page.heading.text() == "Learn" and "join a gym" in page.text.toPlainText()  # the same lesson, in English
    assert page.experiments["freezing"].start_button.text() == "Run the three experiments"
    assert "(smoothed)" in freezing.loss_plot.legend.text()


def test_the_learn_tab_is_built_when_opened_and_leads_to_the_train_page(make_window):
    window = make_window()
    assert not window.learn.frame.is_built()  # the window opens without it
    window.show_page(window.learn.frame)
    page = window.learn.page
    assert window.pages.tabText(window.pages.indexOf(window.learn.frame)) == "Learn"
    page.lesson_list.setCurrentRow(2)  # fine-tuning by freezing
    page.own_model_button.click()
    assert window.controls.current_preset() == "toy-frozen"
    assert window.config_model.value("toy.shifted") is True
    assert window.pages.currentIndex() == window.pages.indexOf(window.splitter)
    window.show_page(window.learn.frame)
    page.lesson_list.setCurrentRow(5)  # merging: its "do this" is the Merge page
    page.own_model_button.click()
    assert window.pages.currentIndex() == window.pages.indexOf(window.merge_page)


def test_lesson_texts_and_translations_ship_with_the_app():
    """The packaged app finds them where the page looks: under resources/ (build.spec copies it whole)."""
    assert lessons_dir() == paths.resources_dir() / "lessons"
    assert i18n.qm_path("hi-Latn").parent == paths.resources_dir() / "i18n"
    spec = (REPO / "build.spec").read_text(encoding="utf-8")
    assert "make translations" in spec and '(str(ROOT / "resources"), "resources")' in spec
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("run:", "test:", "package:"):
        line = next(line for line in makefile.splitlines() if line.startswith(target))
        assert "translations" in line, line
