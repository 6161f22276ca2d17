"""``route-batch``'s output file: never one of its inputs, never a foreign file without ``--force``,
one id type across the input files, and no temporary files left behind by a killed run.

Before: ``--out`` equal to the input replaced it (its embeddings gone); an existing unrelated file was
overwritten silently; files with an int64 ``id`` and a string ``id`` ended in a raw Arrow traceback;
a ``kill -9`` left ``.out.parquet.*.tmp`` files no rerun removed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from synthetic_router import fit_synthetic_router, synthetic_queries, write_embeddings  # noqa: E402

from cascal.cli import main as cli_main  # noqa: E402
from cascal.errors import DataError  # noqa: E402
from cascal.pipeline.route_batch import route_parquet  # noqa: E402


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    router, centres = fit_synthetic_router()
    path = tmp_path_factory.mktemp("route_batch_out") / "router.cascal"
    router.save(path)
    return centres, path


def _cli(src, router_path, out, *extra):
    return cli_main(["route-batch", str(src), "--router", str(router_path), "--out", str(out), *extra])


def test_output_that_is_the_input_file_is_refused(fitted, tmp_path, capsys):
    centres, router_path = fitted
    src = write_embeddings(tmp_path / "q.parquet", synthetic_queries(centres, 20))
    before = src.read_bytes()
    assert _cli(src, router_path, src) == 2
    assert f"{src}" in capsys.readouterr().err
    assert _cli(src, router_path, src, "--force") == 2  # --force never makes the input the output
    # the same file by another name: a symlink and a hard link
    (tmp_path / "link.parquet").symlink_to(src)
    os.link(src, tmp_path / "hard.parquet")
    for other in ("link.parquet", "hard.parquet", "./q.parquet"):
        with pytest.raises(DataError, match="is an input"):
            route_parquet(src, router_path, tmp_path / other, force=True)
    assert src.read_bytes() == before


def test_output_inside_an_input_directory_is_refused(fitted, tmp_path):
    centres, router_path = fitted
    folder = tmp_path / "log"
    folder.mkdir()
    write_embeddings(folder / "a.parquet", synthetic_queries(centres, 20))
    for out in (folder / "routed.parquet", folder / "sub" / "routed.parquet"):
        with pytest.raises(DataError, match=rf"{out}: .*inside the input directory"):
            route_parquet(folder, router_path, out)
    (tmp_path / "alias").symlink_to(folder)
    with pytest.raises(DataError, match="inside the input directory"):
        route_parquet(tmp_path / "alias", router_path, folder / "routed.parquet")
    assert not (folder / "routed.parquet").exists()


def test_existing_foreign_file_needs_force_and_a_previous_output_does_not(fitted, tmp_path, capsys):
    centres, router_path = fitted
    src = write_embeddings(tmp_path / "q.parquet", synthetic_queries(centres, 20))
    foreign = tmp_path / "notes.parquet"
    write_embeddings(foreign, synthetic_queries(centres, 3))
    data = foreign.read_bytes()
    assert _cli(src, router_path, foreign) == 2
    err = capsys.readouterr().err
    assert f"{foreign}" in err and "--force" in err
    assert foreign.read_bytes() == data
    text = tmp_path / "readme.txt"
    text.write_text("keep me")
    with pytest.raises(DataError, match="--force"):
        route_parquet(src, router_path, text)
    assert text.read_text() == "keep me"
    # with --force it is replaced; the output is marked, so a rerun replaces it without --force
    assert _cli(src, router_path, foreign, "--force") == 0
    from cascal.pipeline.route_batch import OUTPUT_MARKER

    assert pq.read_schema(foreign).metadata[OUTPUT_MARKER]
    assert _cli(src, router_path, foreign) == 0
    assert pq.read_table(foreign).num_rows == 20


def test_id_columns_of_different_types_are_refused_naming_both_files(fitted, tmp_path):
    centres, router_path = fitted
    folder = tmp_path / "log"
    folder.mkdir()
    write_embeddings(folder / "a.parquet", synthetic_queries(centres, 5), ids=list(range(5)))
    write_embeddings(folder / "b.parquet", synthetic_queries(centres, 5), ids=[f"q{i}" for i in range(5)])
    with pytest.raises(DataError) as err:
        route_parquet(folder, router_path, tmp_path / "out.parquet", id_column="id")
    message = str(err.value)
    for part in (str(folder / "a.parquet"), str(folder / "b.parquet"), "int64", "string", "'id'"):
        assert part in message
    assert not (tmp_path / "out.parquet").exists()


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from cascal.io.files import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"partial")
        print(tmp, flush=True)
        time.sleep(60)
    """
)


def test_rerun_removes_temp_files_of_killed_runs(fitted, tmp_path):
    centres, router_path = fitted
    src = write_embeddings(tmp_path / "q.parquet", synthetic_queries(centres, 20))
    out = tmp_path / "out" / "routed.parquet"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    tmp = proc.stdout.readline().decode().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert os.path.exists(tmp)  # kill -9: nothing ran to remove it
    route_parquet(src, router_path, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["routed.parquet"]
    assert pq.read_table(out).num_rows == 20


def test_a_live_writers_temp_file_is_left_alone(fitted, tmp_path):
    centres, router_path = fitted
    src = write_embeddings(tmp_path / "q.parquet", synthetic_queries(centres, 20))
    out = tmp_path / "routed.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        tmp = proc.stdout.readline().decode().strip()
        route_parquet(src, router_path, out)
        assert os.path.exists(tmp)  # its writer is alive: still its file
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert pq.read_table(out).num_rows == 20
