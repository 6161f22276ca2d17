"""Saving and loading a fitted CascalRouter: exact round trip, and clear errors on bad files."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from test_router import make_world

from cascal import reference
from cascal.kernels import RouteParams, RoutingTables
from cascal.router import CascalRouter
from cascal.router.base import NotFittedError
from cascal.router.persistence import FORMAT_VERSION, MANIFEST, MANIFEST_KEYS, MANIFEST_KEYS_V2, RouterFileError


@pytest.fixture(scope="module")
def fitted():
    X, responses, _, _ = make_world(seed=3, noise=0.2)
    router = CascalRouter(
        clustering="kmeans", max_niches=4, clamp=(0.05, 0.95), random_state=5, embedding_model="toy-16d"
    ).fit(X, responses)
    return router, X


@pytest.fixture
def saved(fitted, tmp_path):
    router, _ = fitted
    path = tmp_path / "router.cascal"
    router.save(path)
    return path


def _rewrite(src, dst, *, manifest=None, drop=(), replace=None):
    """Copy the zip ``src`` to ``dst``, optionally with another manifest, entries dropped or replaced."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if info.filename == MANIFEST and manifest is not None:
                data = json.dumps(manifest).encode()
            data = replace.get(info.filename, data)
            zout.writestr(info.filename, data)


def _manifest(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(MANIFEST))


def test_round_trip_routes_identically(fitted, saved, rng):
    router, X = fitted
    loaded = CascalRouter.load(saved)
    queries = np.vstack([X, rng.normal(size=(30, X.shape[1]))])
    assert np.array_equal(loaded.route_scores(queries), router.route_scores(queries))
    assert np.array_equal(loaded.route(queries).ranked, router.route(queries).ranked)
    assert loaded.get_params() == router.get_params()
    assert loaded.model_names_ == router.model_names_ and loaded.subject_names_ == router.subject_names_
    for attr in (
        "global_scores_",
        "subject_reps_",
        "centroids_",
        "centroid_subject_",
        "centroid_scores_",
        "centroid_sizes_",
    ):
        assert np.array_equal(getattr(loaded, attr), getattr(router, attr)), attr
    assert loaded.fallback_distance_ == router.fallback_distance_ and loaded.subject_temp_ == router.subject_temp_
    assert np.array_equal(loaded.stats_.mu, router.stats_.mu) and np.array_equal(
        loaded.stats_.sigma, router.stats_.sigma
    )
    for subject in router.subject_names_:
        a, b = router.niches_[subject], loaded.niches_[subject]
        assert [n.size for n in a] == [n.size for n in b]
        assert all(np.array_equal(x.scores, y.scores) and np.array_equal(x.centroid, y.centroid) for x, y in zip(a, b))


def test_manifest_records_versions_and_names(fitted, saved):
    router, _ = fitted
    manifest = _manifest(saved)
    assert set(MANIFEST_KEYS) <= set(manifest)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["embedding_model"] == "toy-16d"
    assert manifest["embedding_dim"] == 16
    assert manifest["model_names"] == router.model_names_
    assert manifest["params"]["clamp"] == [0.05, 0.95]
    assert manifest["routing"] == {"fallback_distance": router.fallback_distance_, "subject_temp": router.subject_temp_}
    assert router.subject_temp_ > 0  # the fixture router calibrates both constants ("auto")


def test_version_1_file_keeps_routing_as_it_was_written(fitted, saved, tmp_path, rng):
    """A file from before format 2 has no routing constants, no ``subject_temp`` and no
    ``fallback_quantile``: it routed with hard subjects and its fixed ``fallback_distance``."""
    router, X = fitted
    manifest = _manifest(saved)
    manifest["format_version"] = 1
    del manifest["routing"]
    for key in ("subject_temp", "fallback_quantile"):
        del manifest["params"][key]
    manifest["params"]["fallback_distance"] = 0.5
    old = tmp_path / "v1.cascal"
    _rewrite(saved, old, manifest=manifest)
    loaded = CascalRouter.load(old)
    assert loaded.subject_temp_ == 0.0 and loaded.fallback_distance_ == 0.5
    queries = rng.normal(size=(40, X.shape[1]))
    tables = RoutingTables(
        router.subject_reps_,
        router.centroids_,
        router.centroid_subject_,
        router.centroid_scores_,
        router.global_scores_,
    )
    expected = reference.route_batch(queries, tables, RouteParams(fallback_distance=0.5, subject_temp=0.0))
    np.testing.assert_allclose(loaded.route_scores(queries), expected.probs, atol=1e-5)
    # a version-1 file with "auto" in it cannot have been written by version 1
    manifest["params"]["fallback_distance"] = "auto"
    _rewrite(saved, old, manifest=manifest)
    with pytest.raises(RouterFileError, match="numeric fallback_distance"):
        CascalRouter.load(old)


def test_version_3_file_loads_without_an_embedder_hash(fitted, saved, tmp_path, rng):
    """A file from before format 4 records no embedder files hash: it loads with ``None`` (its
    embedder is checked by name), and a hash given at fit time round-trips."""
    router, X = fitted
    manifest = _manifest(saved)
    assert manifest["params"]["embedding_sha256"] is None
    manifest["format_version"] = 3
    del manifest["params"]["embedding_sha256"]
    old = tmp_path / "v3.cascal"
    _rewrite(saved, old, manifest=manifest)
    loaded = CascalRouter.load(old)
    assert loaded.embedding_sha256 is None
    queries = rng.normal(size=(20, X.shape[1]))
    assert np.array_equal(loaded.route_scores(queries), router.route_scores(queries))
    hashed = CascalRouter.load(saved).set_params(embedding_sha256="ab" * 32)
    hashed.save(tmp_path / "hashed.cascal")
    assert CascalRouter.load(tmp_path / "hashed.cascal").embedding_sha256 == "ab" * 32


def test_file_holds_no_pickles(saved):
    with zipfile.ZipFile(saved) as zf:
        for name in zf.namelist():
            if name.endswith(".npy"):
                arr = np.load(io.BytesIO(zf.read(name)), allow_pickle=False)
                assert arr.dtype != object


def test_saving_an_unfitted_router_raises(tmp_path):
    with pytest.raises(NotFittedError):
        CascalRouter().save(tmp_path / "x.cascal")


def test_newer_format_version_is_refused(saved, tmp_path):
    manifest = _manifest(saved)
    manifest["format_version"] = FORMAT_VERSION + 1
    bad = tmp_path / "newer.cascal"
    _rewrite(saved, bad, manifest=manifest)
    with pytest.raises(RouterFileError, match="newer"):
        CascalRouter.load(bad)


@pytest.mark.parametrize("key", MANIFEST_KEYS + MANIFEST_KEYS_V2)
def test_manifest_missing_a_key_is_refused(saved, tmp_path, key):
    manifest = _manifest(saved)
    del manifest[key]
    bad = tmp_path / "missing.cascal"
    _rewrite(saved, bad, manifest=manifest)
    with pytest.raises(RouterFileError, match=key):
        CascalRouter.load(bad)


def test_truncated_and_corrupt_files_are_refused(saved, tmp_path):
    raw = saved.read_bytes()
    for name, data in (("truncated", raw[: len(raw) // 2]), ("empty", b""), ("noise", bytes(range(256)) * 8)):
        bad = tmp_path / f"{name}.cascal"
        bad.write_bytes(data)
        with pytest.raises(RouterFileError, match=str(bad)):
            CascalRouter.load(bad)
    with pytest.raises(RouterFileError, match="no such file"):
        CascalRouter.load(tmp_path / "absent.cascal")


def test_bad_entries_are_refused(saved, tmp_path, fitted):
    router, _ = fitted
    cases = {
        "no-array": dict(drop=("arrays/centroids.npy",)),
        "no-manifest": dict(drop=(MANIFEST,)),
        "bad-json": dict(replace={MANIFEST: b"{not json"}),
        "not-npy": dict(replace={"arrays/global_scores.npy": b"garbage"}),
    }
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["pickle"] = dict(replace={"arrays/global_scores.npy": pickled.getvalue()})
    wrong_shape = io.BytesIO()
    np.save(wrong_shape, np.zeros(len(router.model_names_) + 1))
    cases["shape"] = dict(replace={"arrays/global_scores.npy": wrong_shape.getvalue()})
    for label, change in cases.items():
        bad = tmp_path / f"{label}.cascal"
        _rewrite(saved, bad, **change)
        with pytest.raises(RouterFileError):
            CascalRouter.load(bad)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(format="something-else"), "format"),
        (lambda m: m["params"].update(evil="__import__('os')"), "unknown"),
        (lambda m: m["params"].pop("tau"), "missing"),
        (lambda m: m["params"].update(tau=-1.0), "tau"),
        (lambda m: m.update(model_names="abc"), "model_names"),
        (lambda m: m.update(embedding_dim=17), "expected float32"),
        (lambda m: m.update(format_version="1"), "format_version"),
        (lambda m: m["routing"].update(subject_temp=-1.0), "routing.subject_temp"),
        (lambda m: m["routing"].update(fallback_distance="far"), "routing.fallback_distance"),
        (lambda m: m.update(routing=[0.5, 0.05]), "routing must be an object"),
        (lambda m: m["params"].update(subject_temp="warm"), "subject_temp"),
    ],
)
def test_inconsistent_manifest_is_refused(saved, tmp_path, edit, match):
    manifest = _manifest(saved)
    edit(manifest)
    bad = tmp_path / "edited.cascal"
    _rewrite(saved, bad, manifest=manifest)
    with pytest.raises(RouterFileError, match=match):
        CascalRouter.load(bad)
