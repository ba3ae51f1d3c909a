"""--loop: apps run on stdlib asyncio or on uvloop, inside a real Task either way; the console script works."""

import shutil
import subprocess

import pytest


@pytest.mark.parametrize(
    ("loop", "expected_module"),
    [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")],
)
def test_loop_choice(start_server, loop, expected_module):
    pytest.importorskip("uvloop")
    srv = start_server("tests.apps.loop_app:app", "--loop", loop)
    info = srv.get("/").json()
    assert info["loop"].split(".")[0] == expected_module, info
    assert info["in_task"] is True


def test_console_script_is_installed():
    script = shutil.which("ferrocorn")
    assert script, "the `ferrocorn` console script is not on PATH"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("Running ferrocorn ")
