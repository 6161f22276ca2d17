"""``cascal route-batch`` on the local engine: every row as ``router.route`` ranks it, errors that name
file, column and row, atomic output, and memory bounded by the batch, not the file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from synthetic_router import fit_synthetic_router, synthetic_queries, write_embeddings  # noqa: E402

from cascal.cli import main as cli_main  # noqa: E402
from cascal.errors import DataError, EmbeddingError, InvalidParameterError  # noqa: E402
from cascal.pipeline.route_batch import route_parquet  # noqa: E402


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    router, centres = fit_synthetic_router()
    path = tmp_path_factory.mktemp("route_batch") / "router.cascal"
    router.save(path)
    return router, centres, path


def expected_rows(router, X, top_k):
    routing = router.route(X, top_k=top_k)
    names = [[router.model_names_[j] for j in row] for row in routing.ranked]
    scores = np.take_along_axis(routing.scores, routing.ranked, axis=1)
    return names, scores


def test_every_row_as_the_router_ranks_it_across_files_types_and_batches(fitted, tmp_path):
    router, centres, router_path = fitted
    parts = [synthetic_queries(centres, n, seed=s) for n, s in ((23, 1), (0, 2), (40, 3))]
    folder = tmp_path / "log"
    (folder / "day=2").mkdir(parents=True)
    write_embeddings(folder / "a.parquet", parts[0], ids=[f"a{i}" for i in range(23)])
    write_embeddings(folder / "b.parquet", parts[1], ids=[])
    # a list<double> column in a sub-folder (hive-style partition), row groups smaller than the batch
    write_embeddings(
        folder / "day=2" / "c.parquet",
        parts[2].astype(np.float64),
        ids=[f"c{i}" for i in range(40)],
        fixed_size=False,
        row_group_size=9,
    )
    (folder / "_SUCCESS").write_text("")
    (folder / ".hidden.parquet").write_text("not read")
    out = tmp_path / "routed.parquet"
    summary = route_parquet(folder, router_path, out, id_column="id", batch_size=7)
    assert (summary.rows, summary.files) == (63, 3)
    table = pq.read_table(out)
    assert table.column_names == ["id", "ranking", "scores"]
    # each file is routed in its own float type (float32, then float64)
    n_a, s_a = expected_rows(router, parts[0], len(router.model_names_))
    n_c, s_c = expected_rows(router, parts[2].astype(np.float64), len(router.model_names_))
    names, scores = n_a + n_c, np.vstack([s_a, s_c])
    assert table.column("id").to_pylist() == [f"a{i}" for i in range(23)] + [f"c{i}" for i in range(40)]
    assert table.column("ranking").to_pylist() == names
    # the kernel's GEMM blocking depends on the batch's shape: scores agree to float32 rounding
    assert np.allclose(np.array(table.column("scores").to_pylist()), scores, rtol=0, atol=1e-6)

    top = route_parquet(folder / "a.parquet", router_path, tmp_path / "top2.parquet", top_k=2, batch_size=5)
    assert top.rows == 23
    t2 = pq.read_table(tmp_path / "top2.parquet")
    assert t2.column_names == ["ranking", "scores"]
    assert t2.column("ranking").to_pylist() == [row[:2] for row in names[:23]]


def test_text_column_is_embedded_with_the_routers_embedder(tmp_path):
    from simulated_data import simulated_questions, simulated_responses

    from cascal.embedding import load_embedder
    from cascal.router import CascalRouter
    from cascal.simulate import SimWorld

    world = SimWorld(seed=11)
    data = simulated_responses(world, 2, 40)
    embedder = load_embedder("hashing-256")
    router = CascalRouter(embedding_model="hashing-256", random_state=0).fit(embedder.encode(data.questions), data)
    router.save(tmp_path / "router.cascal")
    texts = [q.question for q in simulated_questions(SimWorld(seed=11), 2, 20)[0]]
    pq.write_table(pa.table({"n": list(range(len(texts))), "question": texts}), tmp_path / "log.parquet")
    out = tmp_path / "out.parquet"
    assert (
        cli_main(
            [
                "route-batch",
                str(tmp_path / "log.parquet"),
                "--router",
                str(tmp_path / "router.cascal"),
                "--out",
                str(out),
                "--text-column",
                "question",
                "--id-column",
                "n",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    table = pq.read_table(out)
    names, scores = expected_rows(router, embedder.encode(texts), len(router.model_names_))
    assert table.column("n").to_pylist() == list(range(len(texts)))
    assert table.column("ranking").to_pylist() == names
    assert np.allclose(np.array(table.column("scores").to_pylist()), scores, rtol=0, atol=1e-6)
    with pytest.raises(EmbeddingError, match="differs from the router's embedder"):
        route_parquet(
            tmp_path / "log.parquet", router, tmp_path / "x.parquet", text_column="question", embedder="hashing-128"
        )


def _table_with(column, values, n=None):
    n = len(values) if n is None else n
    return pa.table({"id": [f"q{i}" for i in range(n)], column: values})


def _fixed(X):
    return pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])


def bad_inputs(centres):
    X = synthetic_queries(centres, 12)
    nan, zero, wide = X.copy(), X.copy(), synthetic_queries(np.hstack([centres, centres]), 12)
    nan[9, 3] = np.nan
    zero[10] = 0.0
    ragged = [list(map(float, row)) for row in X]
    ragged[5] = ragged[5][:-1]
    null_row = [list(map(float, row)) for row in X]
    null_row[4] = None
    null_value = [list(map(float, row)) for row in X]
    null_value[6][2] = None
    return {
        "missing column": (_table_with("vector", _fixed(X)), r"no column 'embedding' \(columns: id, vector\)"),
        "fixed dimension": (
            _table_with("embedding", _fixed(wide)),
            "embeddings of dimension 32, the router expects 16",
        ),
        "ragged list": (
            _table_with("embedding", pa.array(ragged, pa.list_(pa.float32()))),
            "row 5: embedding of dimension 15, the router expects 16",
        ),
        "NaN": (_table_with("embedding", _fixed(nan)), "row 9: the embedding holds NaN or infinite values"),
        "all zeros": (_table_with("embedding", _fixed(zero)), "row 10: the embedding is all zeros"),
        "null row": (
            _table_with("embedding", pa.array(null_row, pa.list_(pa.float64()))),
            r"row 4: no embedding \(null\)",
        ),
        "null value": (
            _table_with("embedding", pa.array(null_value, pa.list_(pa.float64()))),
            "row 6: the embedding holds a null value",
        ),
        "integers": (
            _table_with("embedding", pa.array([[1] * 16] * 3, pa.list_(pa.int64()))),
            "expected a list of floats per row, got a list of int64",
        ),
        "strings": (_table_with("embedding", ["a", "b"]), "expected a list of floats per row .*got string"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing column",
        "fixed dimension",
        "ragged list",
        "NaN",
        "all zeros",
        "null row",
        "null value",
        "integers",
        "strings",
    ],
)
def test_bad_rows_and_columns_name_file_column_and_row(fitted, tmp_path, case):
    router, centres, router_path = fitted
    table, message = bad_inputs(centres)[case]
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path, row_group_size=5)  # the bad rows lie in later batches: rows count per file
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous result")
    with pytest.raises(DataError, match=message) as err:
        route_parquet(path, router_path, out, batch_size=4, force=True)  # force: out is no route-batch output
    assert str(err.value).startswith(str(path))
    if case != "missing column":
        assert "column 'embedding'" in str(err.value)
    assert out.read_bytes() == b"previous result"  # untouched, and no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "out.parquet"]


def test_text_errors_wrong_type_null_and_empty(fitted, tmp_path):
    _, _, router_path = fitted
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"q": ["a question", None]}), path)
    with pytest.raises(DataError, match=r"column 'q': row 1: no text \(null\)"):
        route_parquet(path, router_path, tmp_path / "o.parquet", text_column="q")
    pq.write_table(pa.table({"q": ["a question", "  "]}), path)
    with pytest.raises(DataError, match="row 1: empty text"):
        route_parquet(path, router_path, tmp_path / "o.parquet", text_column="q")
    pq.write_table(pa.table({"q": [1, 2]}), path)
    with pytest.raises(DataError, match="expected strings .* got int64"):
        route_parquet(path, router_path, tmp_path / "o.parquet", text_column="q")


def test_not_parquet_empty_input_and_bad_arguments(fitted, tmp_path):
    _, centres, router_path = fitted
    out = tmp_path / "out.parquet"
    fake = tmp_path / "data.parquet"
    fake.write_text("id,embedding\n1,2\n")
    with pytest.raises(DataError, match=f"{fake}: not a Parquet file"):
        route_parquet(fake, router_path, out)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DataError, match="holds no .parquet file"):
        route_parquet(empty_dir, router_path, out)
    with pytest.raises(DataError, match="no such file"):
        route_parquet(tmp_path / "missing", router_path, out)
    no_rows = write_embeddings(tmp_path / "none.parquet", synthetic_queries(centres, 0), ids=[])
    with pytest.raises(DataError, match="no rows to route"):
        route_parquet(no_rows, router_path, out)
    good = write_embeddings(tmp_path / "good.parquet", synthetic_queries(centres, 3))
    with pytest.raises(InvalidParameterError, match="top_k"):
        route_parquet(good, router_path, out, top_k=99)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        route_parquet(good, router_path, out, batch_size=0)
    assert not out.exists()


def test_cli_reports_one_error_line_and_writes_atomically(fitted, tmp_path, capsys):
    _, centres, router_path = fitted
    folder = tmp_path / "log"
    folder.mkdir()
    write_embeddings(folder / "1.parquet", synthetic_queries(centres, 30))
    bad = synthetic_queries(centres, 30)
    bad[17] = np.inf
    write_embeddings(folder / "2.parquet", bad)
    out = tmp_path / "out.parquet"
    argv = ["route-batch", str(folder), "--router", str(router_path), "--out", str(out), "--batch-size", "8"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {folder / '2.parquet'}: column 'embedding': row 17: the embedding holds NaN or infinite values"
    ]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "log"
    ]  # the first file's rows were not published
    (folder / "2.parquet").unlink()
    assert cli_main(argv + ["--top-k", "2"]) == 0
    assert "route-batch: 30 rows from 1 file(s)" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 30


def test_progress_bar_counts_rows(fitted, tmp_path, capsys):
    _, centres, router_path = fitted
    path = write_embeddings(tmp_path / "q.parquet", synthetic_queries(centres, 50))
    route_parquet(path, router_path, tmp_path / "o.parquet", batch_size=16, progress=True)
    err = capsys.readouterr().err
    assert "route-batch: 100%" in err and "50.0/50.0" in err and "rows/s" in err


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import pyarrow as pa
    from cascal.pipeline.route_batch import route_parquet
    summary = route_parquet(sys.argv[1], sys.argv[2], sys.argv[3], batch_size=int(sys.argv[4]))
    print(json.dumps({"rows": summary.rows, "pool_peak": pa.default_memory_pool().max_memory(),
                      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)


def test_memory_is_bounded_by_the_batch_not_the_file(tmp_path):
    """A 96 MiB embedding column (row groups of 24 MiB) routed in batches of 512 rows: Arrow's memory
    pool never holds more than a few batches (it held about three row groups before reads were buffered)."""
    router, centres = fit_synthetic_router(n=600, dim=384)
    router.save(tmp_path / "router.cascal")
    path = tmp_path / "big.parquet"
    writer = None
    for part in range(4):
        X = synthetic_queries(centres, 16_384, seed=part)
        table = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 384)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    column_bytes = 4 * 16_384 * 384 * 4
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_SCRIPT,
            str(path),
            str(tmp_path / "router.cascal"),
            str(tmp_path / "o.parquet"),
            "512",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"] == 4 * 16_384
    assert report["pool_peak"] < column_bytes / 6, report  # < 16 MiB; one row group alone is 24 MiB


def test_rows_do_not_depend_on_the_batch_size(fitted, tmp_path):
    """Batches are padded to whole kernel blocks: every batching gives the same bits (the Ray engine,
    whose batches start elsewhere, relies on it)."""
    _, centres, router_path = fitted
    path = write_embeddings(tmp_path / "q.parquet", synthetic_queries(centres, 1100, seed=9), row_group_size=300)
    tables = []
    for batch_size in (1, 7, 64, 513, 4096):
        route_parquet(path, router_path, tmp_path / f"o{batch_size}.parquet", batch_size=batch_size)
        tables.append(pq.read_table(tmp_path / f"o{batch_size}.parquet"))
    assert all(t.equals(tables[0]) for t in tables[1:])


def test_expected_cost_column_when_the_router_knows_prices(tmp_path):
    router, centres = fit_synthetic_router(priced=True)
    router.save(tmp_path / "router.cascal")
    X = synthetic_queries(centres, 300, seed=4)
    path = write_embeddings(tmp_path / "q.parquet", X)
    route_parquet(path, tmp_path / "router.cascal", tmp_path / "o.parquet", top_k=2, batch_size=64)
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column_names == ["ranking", "scores", "expected_cost"]
    expected = router.route(X, top_k=2).expected_cost
    assert expected is not None and np.ptp(expected) > 0
    assert np.allclose(table.column("expected_cost").to_numpy(), expected, rtol=1e-9, atol=0)
