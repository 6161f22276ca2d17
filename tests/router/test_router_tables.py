"""The router's typed routing boundary: one RoutingTables, RouteParams built in one place, the
record that persistence stores, and kernel errors renamed from the kernel's X to embeddings."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_router import make_world

from cascal import kernels
from cascal.errors import CascalError, InvalidParameterError, KernelError
from cascal.kernels import RouteParams, RoutingTables
from cascal.router import CascalRouter, NotFittedError, persistence
from cascal.router.persistence import RouterRecord, load_record, save_record

TABLE_ATTRIBUTES = {
    "subject_reps_": "subject_reps",
    "centroids_": "centroids",
    "centroid_subject_": "centroid_subject",
    "centroid_scores_": "centroid_scores",
    "centroid_sizes_": "centroid_sizes",
    "global_scores_": "global_scores",
}


@pytest.fixture(scope="module")
def fitted():
    X, responses, _, _ = make_world(seed=2, noise=0.15)
    return CascalRouter(random_state=1, top_k=4).fit(X, responses), X


def test_fitted_tables_are_one_routing_tables(fitted):
    router, _ = fitted
    assert isinstance(router.tables_, RoutingTables)
    for attr, field in TABLE_ATTRIBUTES.items():
        assert getattr(router, attr) is getattr(router.tables_, field), attr
        with pytest.raises(AttributeError):
            setattr(router, attr, getattr(router, attr))
    assert router.subject_reps_.dtype == np.float32 and router.centroids_.dtype == np.float32
    assert router.subject_reps_.shape == (len(router.subject_names_), 16)
    assert router.global_scores_.shape == (len(router.model_names_),)
    assert not hasattr(CascalRouter(), "centroids_") and not hasattr(CascalRouter(), "tables_")


def test_route_params_come_from_the_parameters_and_the_fitted_constants(fitted, rng):
    router, X = fitted
    params = router.route_params()
    assert params == RouteParams(
        k_nearest=router.k_nearest,
        distance_temp=router.distance_temp,
        score_temp=router.score_temp,
        fallback_distance=router.fallback_distance_,
        fallback_width=router.fallback_width,
        top_k=4,
        subject_temp=router.subject_temp_,
    )
    assert router.route_params(top_k=2).top_k == 2
    queries = rng.normal(size=(60, 16))
    got = router.route_details(queries)
    expected = kernels.route_batch(queries, router.tables_, params)
    assert np.array_equal(got.probs, expected.probs) and np.array_equal(got.ranked, expected.ranked)
    # the parameters are read at every call
    wide = CascalRouter(**{**router.get_params(), "k_nearest": 1})
    wide.__dict__.update({k: v for k, v in vars(router).items() if k.endswith("_")})
    assert wide.route_params().k_nearest == 1
    assert not np.array_equal(wide.route_details(queries).probs, got.probs)
    with pytest.raises(NotFittedError):
        CascalRouter().route_params()


def test_kernel_errors_name_the_embeddings(fitted):
    router, X = fitted
    queries = X[:5].astype(np.float64)
    queries[3] = 0.0
    with pytest.raises(KernelError, match=r"^embeddings: row 3 is all zeros; cosine distance is undefined$") as info:
        router.route_details(queries)
    assert info.value.arg == "embeddings" and isinstance(info.value, CascalError)
    # errors of other arguments pass through unchanged
    with pytest.raises(KernelError, match=r"^top_k: must lie in 1..=5") as info:
        router.route_details(X[:2], top_k=6)
    assert info.value.arg == "top_k"


def test_record_round_trip_without_a_file(fitted, rng):
    router, _ = fitted
    record = router.to_record()
    assert record.tables is router.tables_
    assert record.constants == {"fallback_distance": router.fallback_distance_, "subject_temp": router.subject_temp_}
    assert record.params["clamp"] == [0.01, 0.99] and record.params["top_k"] == 4
    rebuilt = CascalRouter.from_record(record)
    queries = rng.normal(size=(40, 16))
    assert np.array_equal(rebuilt.route_scores(queries), router.route_scores(queries))
    assert rebuilt.get_params() == router.get_params()
    assert [n.size for n in rebuilt.niches_[router.subject_names_[0]]] == [
        n.size for n in router.niches_[router.subject_names_[0]]
    ]
    with pytest.raises(InvalidParameterError, match=r"unknown \['colour'\], missing \['tau'\]"):
        params = {k: v for k, v in record.params.items() if k != "tau"}
        CascalRouter.from_record(dataclasses.replace(record, params={**params, "colour": "red"}))
    with pytest.raises(InvalidParameterError, match="invalid saved parameter: tau"):
        CascalRouter.from_record(dataclasses.replace(record, params={**record.params, "tau": -1.0}))


def test_record_checks_that_its_parts_fit(fitted):
    router, _ = fitted
    record = router.to_record()
    with pytest.raises(ValueError, match="model_names lists 4"):
        dataclasses.replace(record, model_names=record.model_names[:4])
    with pytest.raises(ValueError, match="subject_names lists 1"):
        dataclasses.replace(record, subject_names=record.subject_names[:1])
    with pytest.raises(ValueError, match=r"stats_mu: expected shape \(5,\)"):
        dataclasses.replace(record, stats_mu=np.zeros(4))
    with pytest.raises(ValueError, match="routing.subject_temp must be a finite number >= 0"):
        dataclasses.replace(record, constants={"fallback_distance": 0.5, "subject_temp": float("nan")})
    with pytest.raises(ValueError, match="routing must be an object"):
        dataclasses.replace(record, constants={"fallback_distance": 0.5})
    no_sizes = dataclasses.replace(router.tables_, centroid_sizes=None)
    with pytest.raises(ValueError, match="centroid_sizes is required"):
        dataclasses.replace(record, tables=no_sizes)
    bad_subject = dataclasses.replace(router.tables_, centroid_subject=np.full(len(router.centroid_subject_), 7))
    with pytest.raises(ValueError, match=r"centroid_subject holds indices outside 0..1"):
        dataclasses.replace(record, tables=bad_subject)


def test_persistence_stores_a_record_it_was_handed(tmp_path, rng):
    """persistence round-trips a record made by hand, with no router involved."""
    tables = RoutingTables(
        rng.normal(size=(2, 3)),
        rng.normal(size=(3, 3)),
        [0, 1, 1],
        rng.random((3, 2)),
        rng.random(2),
        centroid_sizes=[5, 6, 7],
    )
    record = RouterRecord(
        params={"anything": [1, "two"]},
        constants={"fallback_distance": 0.3, "subject_temp": 0.0},
        tables=tables,
        model_names=["m1", "m2"],
        subject_names=["s1", "s2"],
        embedding_model=None,
        stats_mu=np.zeros(2),
        stats_sigma=np.ones(2),
    )
    save_record(record, tmp_path / "r.cascal")
    back = load_record(tmp_path / "r.cascal")
    assert back.params == record.params and back.constants == record.constants
    assert back.model_names == ["m1", "m2"] and back.subject_names == ["s1", "s2"] and back.embedding_model is None
    for field in persistence.TABLE_ARRAYS:
        dtype = persistence.TABLE_ARRAYS[field][0]
        assert np.array_equal(getattr(back.tables, field), getattr(tables, field).astype(dtype)), field
    assert np.array_equal(back.stats_sigma, np.ones(2))
    # every routing-table field is stored: the file layout follows RoutingTables
    assert set(persistence.TABLE_ARRAYS) | set(persistence.COST_ARRAYS) == {
        f.name for f in dataclasses.fields(RoutingTables)
    }


def test_persistence_imports_neither_the_router_nor_the_package_root():
    tree = ast.parse(Path(persistence.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not any(m == "cascal" or (m or "").startswith("cascal.router") for m in imported), imported
    # and it reaches into no object's private attributes
    private = [
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
    ]
    assert private == [], private


DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("version", [1, 2])
def test_files_written_before_the_record_route_as_they_did(version):
    """router_v1/v2.cascal were saved by cascal before the RouterRecord refactor (the v1 file is
    the v2 one rewritten as format 1), and the .npz holds how that cascal routed 50 queries with
    them: loading them today gives the same routes."""
    expected = np.load(DATA / "routes_written_by_format_1_and_2.npz")
    router = CascalRouter.load(DATA / f"router_v{version}.cascal")
    got = router.route_details(expected["queries"])
    tag = f"v{version}"
    np.testing.assert_array_equal(got.subject, expected[f"{tag}_subject"])
    np.testing.assert_array_equal(got.ranked, expected[f"{tag}_ranked"])
    np.testing.assert_allclose(got.probs, expected[f"{tag}_probs"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.alpha, expected[f"{tag}_alpha"], rtol=0, atol=1e-12)
    if version == 1:
        assert router.subject_temp_ == 0.0 and router.fallback_distance_ == 0.5
    else:
        assert router.subject_temp_ > 0
