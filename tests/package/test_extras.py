"""A command whose optional extra is missing says which extra to install (one error line, exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK_STARLETTE = "import sys; sys.modules['starlette'] = None; from cascal.cli import main; sys.exit(main({argv!r}))"


@pytest.mark.parametrize(
    "argv, command",
    [(["serve", "router.cascal", "--pool", "pool.yaml"], "serve"), (["serve-bench", "--seconds", "1"], "serve-bench")],
)
def test_missing_serve_extra_is_one_error_line(argv, command):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_STARLETTE.format(argv=argv)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cascal {command} needs the optional extra: pip install 'cascal[serve]' (starlette is missing)"
    ]
