"""`python -m whyrec` is the CLI: the head-to-head driver and other scripts call it through sys.executable."""

import subprocess
import sys


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "whyrec", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "benchmark" in out.stdout


def test_python_dash_m_bad_input_is_one_line_exit_2():
    out = subprocess.run([sys.executable, "-m", "whyrec", "evaluate", "--run", "/nonexistent/run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("whyrec: error:") and "Traceback" not in out.stderr
