"""What a newcomer meets first: the CLI starts without importing torch; `--help` works everywhere."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_and_help_start_without_importing_torch():
    code = "import sys, robustadder.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    helped = subprocess.run([sys.executable, "-m", "robustadder", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "compare" in helped.stdout


def test_the_api_functions_are_there_when_asked_for():
    import robustadder

    assert callable(robustadder.evaluate) and callable(robustadder.compare)
    from robustadder import comparison

    assert robustadder.compare is comparison.compare  # the function, whatever was imported before
