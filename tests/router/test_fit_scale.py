"""CascalRouter.fit at scale: memory-mapped embeddings are never copied whole, the calibration
rows, parity of the fit with its numpy/scipy references, and (real data) with the reference kernels."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import cascal.kernels
import cascal.reference
from cascal.bench.cases.fit import make_fit_input
from cascal.router import CascalRouter, calibration
from cascal.router.niches import merge_centroids


@pytest.fixture(scope="module")
def synthetic():
    return make_fit_input(24_000, n_subjects=12, n_models=6, seed=3)


def test_fit_on_a_memory_map_does_not_copy_the_embeddings(synthetic, tmp_path):
    """The traced peak of fit on a float32 memory map stays below the size of the matrix itself
    (the old fit held two float64 copies, four times that); the routes equal an in-memory fit's."""
    path = tmp_path / "emb.npy"
    np.save(path, synthetic.embeddings)
    mapped = np.load(path, mmap_mode="r")
    # warm up imports and kernels outside the trace
    CascalRouter(random_state=0).fit(synthetic.embeddings[:2000], synthetic.responses.subset(np.arange(2000)))
    tracemalloc.start()
    router = CascalRouter(random_state=0).fit(mapped, synthetic.responses)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < mapped.nbytes, (peak, mapped.nbytes)
    in_memory = CascalRouter(random_state=0).fit(np.array(mapped), synthetic.responses)
    queries = synthetic.embeddings[::7]
    np.testing.assert_array_equal(router.route(queries).ranked, in_memory.route(queries).ranked)
    np.testing.assert_array_equal(router.centroids_, in_memory.centroids_)


def test_fit_refuses_bad_rows_of_a_memory_map(synthetic, tmp_path):
    X = synthetic.embeddings.copy()
    X[5000] = 0.0
    np.save(tmp_path / "zero.npy", X)
    with pytest.raises(ValueError, match="row 5000 is all zeros"):
        CascalRouter().fit(np.load(tmp_path / "zero.npy", mmap_mode="r"), synthetic.responses)
    X[9000, 3] = np.nan
    np.save(tmp_path / "nan.npy", X)
    with pytest.raises(ValueError, match="NaN or infinite"):
        CascalRouter().fit(np.load(tmp_path / "nan.npy", mmap_mode="r"), synthetic.responses)


def test_calibration_rows_are_all_rows_until_the_cap_then_evenly_spaced():
    np.testing.assert_array_equal(calibration.calibration_rows(1000, 14), np.arange(1000))
    cap = calibration.CALIBRATION_MAX_ENTRIES // 200
    rows = calibration.calibration_rows(1_000_000, 200)
    assert rows.size == cap and rows[0] == 0 and rows[-1] == 999_999
    gaps = np.diff(rows)
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1  # evenly spaced
    assert calibration.calibration_rows(50_000, 10**9).size == 10_000  # never fewer than 10,000 rows


def test_subject_temperature_equals_the_dense_numpy_fit(synthetic):
    """fit_subject_temperature (block-built distances, Rust likelihood) finds the temperature the
    dense numpy likelihood finds, on unit rows and on raw rows with their norms."""
    from scipy.optimize import minimize_scalar

    router = CascalRouter(random_state=0).fit(synthetic.embeddings, synthetic.responses)
    X = synthetic.embeddings.astype(np.float64)
    norms = np.linalg.norm(X, axis=1)
    unit = X / norms[:, None]
    reps = router.subject_reps_.astype(np.float64)
    labels = np.searchsorted(router.subject_names_, synthetic.responses.subjects)
    dist = 1.0 - unit @ reps.T
    low, high = np.log(calibration.SUBJECT_TEMP_BOUNDS[0]), np.log(calibration.SUBJECT_TEMP_BOUNDS[1])
    dense = minimize_scalar(
        lambda lt: cascal.reference.softmax_nll(dist, labels, float(np.exp(lt))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-3},
    )
    want = float(np.exp(dense.x))
    assert calibration.fit_subject_temperature(unit, reps, labels) == pytest.approx(want, rel=1e-6)
    assert calibration.fit_subject_temperature(synthetic.embeddings, reps, labels, norms=norms) == pytest.approx(
        want, rel=1e-6
    )
    assert router.subject_temp_ == pytest.approx(want, rel=1e-6)


def test_merge_centroids_equals_recomputing_every_distance(rng):
    """The incremental merge gives the merges of the plain loop that recomputes all distances."""

    def plain(cents, counts, threshold):
        cents, counts = [c for c in cents], [float(c) for c in counts]
        while len(cents) > 1:
            C = np.asarray(cents)
            dist = 1.0 - C @ C.T
            np.fill_diagonal(dist, np.inf)
            i, j = np.unravel_index(np.argmin(dist), dist.shape)
            if dist[i, j] >= threshold:
                break
            i, j = min(i, j), max(i, j)
            merged = counts[i] * cents[i] + counts[j] * cents[j]
            cents[i] = merged / np.linalg.norm(merged)
            counts[i] += counts[j]
            del cents[j], counts[j]
        return np.asarray(cents), np.asarray(counts)

    for _ in range(5):
        base = rng.normal(size=(6, 16))
        seeds = base[rng.integers(0, 6, 40)] + rng.normal(scale=0.25, size=(40, 16))
        seeds /= np.linalg.norm(seeds, axis=1, keepdims=True)
        counts = rng.integers(1, 50, 40).astype(float)
        got_c, got_n = merge_centroids(seeds, counts, 0.15)
        want_c, want_n = plain(seeds, counts, 0.15)
        assert got_c.shape == want_c.shape and 1 < got_c.shape[0] < 40
        np.testing.assert_allclose(got_c, want_c, atol=1e-12)
        np.testing.assert_array_equal(got_n, want_n)


KERNELS = (
    "consensus_scores",
    "linkage",
    "fcluster",
    "pairwise_distances",
    "cluster_means",
    "nearest_centroids",
    "route_batch",
    "softmax_nll",
)


def _reference_kernels(monkeypatch):
    for name in KERNELS:
        monkeypatch.setattr(cascal.kernels, name, getattr(cascal.reference, name))


def test_fit_with_reference_kernels_routes_the_same(synthetic, monkeypatch):
    router = CascalRouter(random_state=0).fit(synthetic.embeddings, synthetic.responses)
    queries = synthetic.embeddings[::5]
    got = router.route_details(queries, top_k=6)
    _reference_kernels(monkeypatch)
    ref = CascalRouter(random_state=0).fit(synthetic.embeddings, synthetic.responses)
    want = ref.route_details(queries, top_k=6)
    np.testing.assert_allclose(router.centroids_, ref.centroids_, atol=1e-6)
    np.testing.assert_array_equal(got.ranked, want.ranked)
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-5)  # float32 queries: the kernel multiplies in float32


def test_real_data_fit_routes_like_the_reference_kernels(data_dir, monkeypatch):
    """On the real MMLU-Pro matrix (12k questions, 34 models) the fit with the Rust kernels and the
    fit with every kernel swapped for its numpy/scipy reference rank all 34 models the same way for
    every question."""
    from cascal.io import load_dataset

    data = load_dataset(data_dir, out_of_range="unparsable", mmap=True)
    router = CascalRouter(random_state=0).fit(data.embeddings, data)
    got = router.route_details(data.embeddings, top_k=data.n_models)
    _reference_kernels(monkeypatch)
    ref = CascalRouter(random_state=0).fit(data.embeddings, data)
    want = ref.route_details(data.embeddings, top_k=data.n_models)
    assert router.subject_temp_ == pytest.approx(ref.subject_temp_, rel=1e-9)
    np.testing.assert_array_equal(got.ranked, want.ranked)


def test_scale_cases_are_registered_and_the_reference_slice_is_whole_subjects():
    from cascal.bench import all_cases
    from cascal.bench.cases.fit import _fit_setup

    names = [c.name for c in all_cases()]
    assert any(n.startswith("fit 100,000") for n in names) and any(n.startswith("fit 1,000,000") for n in names)
    assert any(n.startswith("route 1,000,000") for n in names)
    case = _fit_setup(3000, 20)
    subjects = case.data.responses.subjects
    # the slice ends where a subject ends, and holds the first 2 of the 20 subjects
    assert len(set(subjects[: case.slice_rows].tolist())) == 2
    assert subjects[case.slice_rows - 1] != subjects[case.slice_rows]
    assert case.scale == pytest.approx(3000 / case.slice_rows)
