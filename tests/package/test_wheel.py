"""The abi3 wheel installs and runs in a fresh venv with no Rust toolchain on PATH.

Builds with ``maturin build --release`` (reusing the project's ``target/`` cache), installs the wheel
into a new venv whose PATH has no cargo/rustc, imports ``cascal`` and calls a Rust kernel
(``pdist``, checked against distances worked out by hand).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _maturin() -> list[str]:
    exe = shutil.which("maturin")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("maturin is not installed (it is in the 'test' extra)")
        pytest.skip("maturin is not installed")
    return [exe]


@pytest.mark.slow
def test_abi3_wheel_installs_without_rust(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [*_maturin(), "build", "--release", "--quiet", "--out", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    wheels = list(dist.glob("cascal-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert "-cp39-abi3-" in wheel.name, f"not an abi3 wheel for Python >= 3.9: {wheel.name}"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert any(n.startswith("cascal/_core") and n.endswith(".so") for n in names), names
    assert "cascal/_core.pyi" in names and "cascal/py.typed" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # numpy from the pip cache/registry; the wheel itself without its heavier optional dependencies
    subprocess.run([py, "-m", "pip", "install", "--quiet", "numpy"], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)

    no_rust_path = os.pathsep.join(
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and not (Path(p) / "cargo").exists() and not (Path(p) / "rustc").exists()
    )
    probe = (
        "import shutil, numpy as np, cascal\n"
        "from cascal import _core\n"
        "assert shutil.which('cargo') is None and shutil.which('rustc') is None\n"
        "X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], dtype=np.float32)\n"
        "d = _core.pdist(X, 'euclidean')\n"
        "assert d.dtype == np.float32 and np.allclose(d, [5 ** 0.5, 20 ** 0.5, 13 ** 0.5]), d\n"
        "print(cascal.__version__, _core.num_threads())\n"
    )
    out = subprocess.run(
        [py, "-c", probe],
        env={"PATH": no_rust_path, "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "0.1.0"
