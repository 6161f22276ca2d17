"""The package imports, exposes its version and its CLI."""

import subprocess
import sys

import cascal
from cascal import _core


def test_version_matches_extension():
    assert cascal.__version__ == _core.__version__
    assert _core.num_threads() >= 1


def test_cli_help_lists_bench():
    out = subprocess.run([sys.executable, "-m", "cascal", "--help"], capture_output=True, text=True, check=True)
    assert "bench" in out.stdout
