"""The interface's languages: English (the source strings) and the guide's Hinglish, through Qt's own machinery.

Marked strings go through :func:`tr` (``QCoreApplication.translate`` in the empty context: the one
``pyside6-lupdate`` gives a plain ``tr("…")`` call), or are marked with :func:`marked` where the text is kept
as data and translated later; so a ``QTranslator`` loaded from ``resources/i18n/kamaal_<language>.qm``
switches them.  The ``.ts`` files are the committed sources: ``make update-translations`` refreshes them from
the code with ``pyside6-lupdate``, ``make translations`` (which ``make run``, ``make test`` and ``make
package`` depend on) compiles them with ``pyside6-lrelease``.  Without a compiled ``.qm`` (a checkout run
without make) the interface stays English and the lessons' own texts still follow the language.  The choice
is kept in the app's settings file, and installed at start-up by :func:`install_saved_language`.  GUI thread
only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, QTranslator

from desktop_app import paths

CONTEXT = ""  # what pyside6-lupdate records for tr("…") and marked("…") (QT_TR_NOOP) calls
SOURCE_LANGUAGE = "en"
# Shown by their own names, never translated: a person looks for the language they read.
LANGUAGES = {"en": "English", "hi-Latn": "Hinglish"}
SETTINGS_KEY = "learn/language"

_installed: QTranslator | None = None


def tr(text: str) -> str:
    """``text`` in the interface's language (the English source when no translation is installed)."""
    return QCoreApplication.translate(CONTEXT, text)


def marked(text: str) -> str:
    """Marks ``text`` as a string to translate where it is translated later, by :func:`tr` (a title kept as data)."""
    return text


def i18n_dir() -> Path:
    return paths.resources_dir() / "i18n"


def qm_path(language: str) -> Path:
    return i18n_dir() / f"kamaal_{language}.qm"


def app_settings() -> QSettings:
    return QSettings(str(paths.settings_path()), QSettings.Format.IniFormat)


def saved_language() -> str:
    language = str(app_settings().value(SETTINGS_KEY, SOURCE_LANGUAGE))
    return language if language in LANGUAGES else SOURCE_LANGUAGE


def save_language(language: str) -> None:
    app_settings().setValue(SETTINGS_KEY, language)


def current_language() -> str:
    """The language whose translator is installed (English when none is)."""
    return str(_installed.property("language")) if _installed is not None else SOURCE_LANGUAGE


def install_language(language: str, qm_file: Path | None = None) -> bool:
    """Install ``language``'s translator in the application (English removes it); widgets get a LanguageChange.

    False when its compiled ``.qm`` is missing or unreadable: the interface then stays in English.
    """
    global _installed
    app = QCoreApplication.instance()
    if app is None:
        return False
    if _installed is not None:
        app.removeTranslator(_installed)
        _installed = None
    if language == SOURCE_LANGUAGE:
        return True  # removing a translator already told every widget (a LanguageChange event)
    translator = QTranslator(app)
    file = qm_file or qm_path(language)
    if not file.is_file() or not translator.load(str(file)):
        return False
    translator.setProperty("language", language)
    app.installTranslator(translator)
    _installed = translator
    return True


def install_saved_language() -> str:
    """At start-up: the remembered language's translator; returns the language."""
    language = saved_language()
    install_language(language)
    return language
