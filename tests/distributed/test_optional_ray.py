"""Ray stays optional: ``import cascal`` and the command line never import it, and ``--engine ray``
without the extra says which extra to install."""

from __future__ import annotations

import subprocess
import sys

IMPORTS = (
    "import sys, cascal, cascal.cli, cascal.pipeline.route_batch, cascal.distributed, cascal.distributed.serve; "
    "cascal.cli.build_parser(); print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
)
BLOCK_RAY = (
    "import sys; sys.modules['ray'] = None; from cascal.cli import main; "
    "sys.exit(main(['route-batch', 'in.parquet', '--router', 'r.cascal', '--out', 'o.parquet', '--engine', 'ray']))"
)


def test_importing_cascal_and_its_cli_does_not_import_ray():
    proc = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_engine_ray_without_the_extra_names_it():
    proc = subprocess.run([sys.executable, "-c", BLOCK_RAY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: cascal route-batch needs the optional extra: pip install 'cascal[ray]' (ray is missing)"
    ]


BLOCK = "import sys; sys.modules[{module!r}] = None; from cascal.cli import main; sys.exit(main({argv!r}))"


def test_serve_ray_and_route_batch_without_their_extras_name_them():
    cases = [
        ("ray", ["serve", "r.cascal", "--pool", "p.yaml", "--ray"], "serve", "ray", "ray"),
        (
            "pyarrow",
            ["route-batch", "in.parquet", "--router", "r.cascal", "--out", "o"],
            "route-batch",
            "parquet",
            "pyarrow",
        ),
    ]
    for module, argv, command, extra, missing in cases:
        proc = subprocess.run(
            [sys.executable, "-c", BLOCK.format(module=module, argv=argv)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"error: cascal {command} needs the optional extra: pip install 'cascal[{extra}]' ({missing} is missing)"
        ]
