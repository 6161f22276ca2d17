"""``cascal route-batch --engine ray`` and ``cascal.distributed.route_dataset`` on a local Ray instance
(2 CPUs): every row equal to the single-process result; errors as one line naming the row."""

from __future__ import annotations

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("ray.data")

from synthetic_router import fit_synthetic_router, synthetic_queries, write_embeddings  # noqa: E402

from cascal.cli import main as cli_main  # noqa: E402


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    router, centres = fit_synthetic_router(n=3000, n_subjects=70)
    path = tmp_path_factory.mktemp("ray_data") / "router.cascal"
    router.save(path)
    return router, centres, path


def test_ray_engine_gives_every_row_of_the_single_process_run(ray_local, fitted, tmp_path, capsys):
    _, centres, router_path = fitted
    folder = tmp_path / "log"
    folder.mkdir()
    for part, n in enumerate((700, 0, 1300)):
        X = synthetic_queries(centres, n, seed=10 + part)
        write_embeddings(folder / f"part-{part}.parquet", X, ids=[f"{part}-{i}" for i in range(n)], row_group_size=250)
    common = ["--router", str(router_path), "--id-column", "id", "--batch-size", "128", "--top-k", "4"]
    assert cli_main(["route-batch", str(folder), "--out", str(tmp_path / "local.parquet"), *common]) == 0
    argv = ["route-batch", str(folder), "--out", str(tmp_path / "ray.parquet"), "--engine", "ray", "--workers", "1"]
    assert cli_main(argv + common) == 0
    assert "2000 rows from 3 file(s)" in capsys.readouterr().out
    local, distributed = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray.parquet")
    assert distributed.num_rows == local.num_rows == 2000
    assert distributed.column("id").to_pylist() == local.column("id").to_pylist()  # input order kept
    assert distributed.column("ranking").to_pylist() == local.column("ranking").to_pylist()
    assert distributed.column("scores").to_pylist() == local.column("scores").to_pylist()


def test_route_dataset_on_an_in_memory_dataset(ray_local, fitted, tmp_path):
    from cascal.distributed import route_dataset

    router, centres, router_path = fitted
    X = synthetic_queries(centres, 300, seed=5).astype(np.float64)
    table = pa.table({"qid": np.arange(300), "vec": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])})
    routed = route_dataset(ray_local.data.from_arrow(table), router_path, embedding_column="vec", id_column="qid")
    rows = sorted(routed.take_all(), key=lambda r: r["qid"])
    routing = router.route(X, top_k=len(router.model_names_))
    assert [r["qid"] for r in rows] == list(range(300))
    assert [list(r["ranking"]) for r in rows] == [routing.top_models(i) for i in range(300)]
    expected = np.take_along_axis(routing.scores, routing.ranked, axis=1)
    assert np.allclose(np.array([list(r["scores"]) for r in rows]), expected, rtol=0, atol=1e-12)


def test_a_bad_row_in_a_worker_is_one_error_line_naming_it(ray_local, fitted, tmp_path, capsys):
    _, centres, router_path = fitted
    X = synthetic_queries(centres, 200, seed=3)
    X[123] = np.nan
    path = write_embeddings(tmp_path / "q.parquet", X)
    out = tmp_path / "o.parquet"
    argv = ["route-batch", str(path), "--router", str(router_path), "--out", str(out), "--engine", "ray"]
    assert cli_main(argv + ["--id-column", "id"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {path}: column 'embedding': row 123: the embedding holds NaN or infinite values"
    ]
    assert not out.exists()
    # schema problems are found before Ray starts any work, naming the file
    assert cli_main(argv + ["--embedding-column", "vector"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: no column 'vector'")
