"""The type stub of the Rust extension matches what the extension really exports (mypy.stubtest)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cascal._core as core


def test_stub_matches_extension(tmp_path):
    try:
        import mypy  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("mypy is not installed (it is in the 'test' extra)")
        pytest.skip("mypy is not installed")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "cascal._core", "--mypy-config-file", os.devnull],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_public_extension_function_is_in_the_stub():
    stub = os.path.join(os.path.dirname(core.__file__), "_core.pyi")
    with open(stub) as fh:
        text = fh.read()
    exported = [name for name in dir(core) if not name.startswith("_")]
    assert exported, "the extension exports nothing"
    missing = [name for name in exported if f"def {name}(" not in text and f"class {name}" not in text]
    assert not missing, f"functions of cascal._core without a stub: {missing}"
