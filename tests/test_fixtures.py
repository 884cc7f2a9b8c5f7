"""The suite's own guard: a test that leaves a child process running fails (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

LEAKY_TEST = '''
import subprocess
import sys


def test_leaves_a_child_behind():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_cleans_up_after_itself():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    child.wait()
'''


def test_a_test_that_leaves_a_child_process_fails(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST, encoding="utf-8")
    # The suite's conftest as a plugin, on a test file outside the suite.
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                             "-q", str(tmp_path / "test_leaky.py")], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    # The leaky test errors in its teardown (its body passed); the tidy one is left alone.
    assert "2 passed, 1 error" in result.stdout, result.stdout
    assert "ERROR" in result.stdout and "test_leaky.py::test_leaves_a_child_behind" in result.stdout
    assert "test left child processes behind" in result.stdout
