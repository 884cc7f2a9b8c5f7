"""Before the window opens on Linux, a missing X11 library of Qt's plugin is named with the apt-get line
(Qt's own message names a library that is installed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from desktop_app import launcher
from desktop_app.platform_check import install_hint, missing_libraries, qt_folder, uses_xcb


def test_qt_is_asked_for_the_x11_plugin_only_when_qt_would_use_it():
    assert uses_xcb({"DISPLAY": ":0"})
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"})
    assert uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"})
    assert not uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"})
    assert not uses_xcb({})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the dynamic linker check is Linux's")
def test_missing_libraries_are_what_the_dynamic_linker_reports_for_the_plugin():
    qt = qt_folder()
    assert qt is not None and (qt / "plugins" / "platforms" / "libqxcb.so").is_file()
    output = subprocess.run(["ldd", str(qt / "plugins" / "platforms" / "libqxcb.so")], capture_output=True,
                            text=True, check=True).stdout
    expected = [line.split()[0] for line in output.splitlines() if "not found" in line]
    found = missing_libraries(qt)
    assert set(expected) <= set(found) and len(found) == len(set(found))


def test_the_message_names_the_libraries_and_the_exact_packages(tmp_path):
    fake_ldd = tmp_path / "ldd"
    fake_ldd.write_text("#!/bin/sh\necho '\tlibxcb-icccm.so.4 => not found'\n"
                        "echo '\tlibxcb-keysyms.so.1 => not found'\n"
                        "echo '\tlibc.so.6 => /lib/libc.so.6 (0x1)'\necho '\tlibweird.so.9 => not found'\n")
    fake_ldd.chmod(0o755)
    qt = tmp_path / "Qt"
    (qt / "plugins" / "platforms").mkdir(parents=True)
    (qt / "plugins" / "platforms" / "libqxcb.so").write_bytes(b"")
    missing = missing_libraries(qt, str(fake_ldd))
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libweird.so.9"]
    hint = install_hint(missing)
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1\n" in hint and "libweird.so.9" in hint


def test_the_launcher_stops_before_qt_with_the_hint(monkeypatch, capsys):
    monkeypatch.setattr(launcher.paths, "has_display", lambda: True)
    monkeypatch.setattr("desktop_app.platform_check.check_window_platform", lambda: "kamaal: install libxcb-icccm4")
    assert launcher.main(["--preset", "toy"]) == 1
    assert "install libxcb-icccm4" in capsys.readouterr().err
