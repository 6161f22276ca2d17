"""The fitting internals of :class:`CascalRouter` and every step of niche discovery pinned on small
inputs whose results are derived here independently (by hand, or with plain numpy and the numpy
references), so that changing any of them changes a test result (issue 14, mutation testing).

docs/algorithm.md#skill-niches describes the niche steps, #subject-assignment the subject
temperature, #fallback-to-the-global-ranking the calibrated fallback distance.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascal import reference
from cascal.data import NOT_ASKED, ResponseMatrix
from cascal.kernels import ConsensusParams, RouteParams, RoutingTables
from cascal.router import CascalRouter
from cascal.router import cascal_router as cr
from cascal.router.clustering import ClusteringConfig
from cascal.router.niches import (
    NicheConfig,
    _top_sets,
    _unit_cosine_distances,
    assign_and_score,
    discover_subject_niches,
    merge_centroids,
    proficiency_weights,
    prune_niches,
    seed_centroids,
    spherical_means,
)

N_OPTIONS = 6
MODELS = ["A", "B", "C", "D"]


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_world(seed: int = 0, per_niche: int = 30, n_subjects: int = 3, d: int = 12, logprobs: bool = False):
    """``n_subjects`` subjects x two niches; model A is right on niche 0 of every subject, B on
    niche 1, C and D right 60 % of the time. Subjects are named so that their sorted order differs
    from the order of their rows, and rows of the subjects are interleaved."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(d, 2 * n_subjects)))[0].T
    names = [f"s{chr(ord('z') - s)}" for s in range(n_subjects)]  # "sz", "sy", ...: reverse sorted
    rows, subjects, niche = [], [], []
    for s in range(n_subjects):
        for k in range(2):
            rows.append(centres[2 * s + k] + 0.08 * rng.normal(size=(per_niche, d)))
            subjects += [names[s]] * per_niche
            niche += [k] * per_niche
    X = np.vstack(rows)
    # rows of different lengths: fit normalises them
    X *= rng.uniform(0.5, 3.0, size=(X.shape[0], 1))
    perm = rng.permutation(X.shape[0])
    X = X[perm].astype(np.float32)
    subjects = np.asarray(subjects)[perm]
    niche = np.asarray(niche)[perm]
    n = X.shape[0]
    gold = rng.integers(0, N_OPTIONS, size=n)
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, size=(n, len(MODELS)))) % N_OPTIONS
    answers = np.empty((n, len(MODELS)), dtype=np.int64)
    answers[:, 0] = np.where(niche == 0, gold, wrong[:, 0])
    answers[:, 1] = np.where(niche == 1, gold, wrong[:, 1])
    for m in (2, 3):
        answers[:, m] = np.where(rng.random(n) < 0.6, gold, wrong[:, m])
    answers[rng.random((n, len(MODELS))) < 0.05] = NOT_ASKED
    lp = rng.normal(-1.0, 0.5, size=(n, len(MODELS))).astype(np.float32) if logprobs else None
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, N_OPTIONS),
        subjects=subjects,
        model_names=MODELS,
        gold=gold,
        logprobs=lp,
        embedding_model="emb-x",
    )
    return X, responses


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def fitted(world):
    X, responses = world
    return CascalRouter(random_state=0).fit(X, responses)


def nan_mean_or_zero(scores: np.ndarray) -> np.ndarray:
    out = np.zeros(scores.shape[1])
    for m in range(scores.shape[1]):
        col = scores[:, m][~np.isnan(scores[:, m])]
        out[m] = col.mean() if col.size else 0.0
    return out


# ---------------------------------------------------------------------- module-level helpers
def test_calibration_rows_of_one_subject_use_the_whole_budget(monkeypatch):
    monkeypatch.setattr(cr, "CALIBRATION_MAX_ENTRIES", 40_000)
    np.testing.assert_array_equal(cr._calibration_rows(30_000, 1), np.arange(30_000))
    assert cr._calibration_rows(30_000, 2).size == 20_000
    assert cr._calibration_rows(30_000, 0).size == 30_000


def test_calibration_rows_cap_boundary():
    cap = cr.CALIBRATION_MAX_ENTRIES // 1000
    assert cap > 10_000
    np.testing.assert_array_equal(cr._calibration_rows(cap, 1000), np.arange(cap))
    rows = cr._calibration_rows(cap + 1, 1000)
    assert rows.size == cap and rows[0] == 0 and rows[-1] == cap
    assert rows.dtype == np.int64 and set(np.diff(rows).tolist()) <= {1, 2}
    # no subject: the cap is the whole budget; a huge pool of subjects: never fewer than 10,000 rows
    np.testing.assert_array_equal(cr._calibration_rows(20_000, 0), np.arange(20_000))
    np.testing.assert_array_equal(cr._calibration_rows(10_000, 1 << 24), np.arange(10_000))
    few = cr._calibration_rows(10_001, 1 << 24)
    assert few.size == 10_000 and few[0] == 0 and few[-1] == 10_000
    np.testing.assert_array_equal(few, np.unique(np.round(np.linspace(0, 10_000, 10_000)).astype(int)))


def test_row_norms_over_several_blocks():
    rng = np.random.default_rng(1)
    n = 2 * cr.ROW_CHUNK + 7
    X = (rng.normal(size=(n, 3)) * rng.uniform(0.1, 10, size=(n, 1))).astype(np.float32)
    norms = cr._row_norms(X)
    assert norms.dtype == np.float64 and norms.shape == (n,)
    want = np.sqrt((X.astype(np.float64) ** 2).sum(axis=1))
    np.testing.assert_allclose(norms, want, rtol=1e-12)
    # unit rows are fine: only a zero row is refused
    np.testing.assert_array_equal(cr._row_norms(np.eye(3, dtype=np.float32)), np.ones(3))


@pytest.mark.parametrize("bad_row", [0, 5, cr.ROW_CHUNK + 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_row_norms_refuse_non_finite_rows_in_any_block(bad_row, bad):
    X = np.ones((cr.ROW_CHUNK + 10, 2))
    X[bad_row, 1] = bad
    with pytest.raises(ValueError, match=r"^embeddings: contains NaN or infinite values$"):
        cr._row_norms(X)


@pytest.mark.parametrize("zero_row", [0, 4, cr.ROW_CHUNK + 1])
def test_row_norms_and_unit_rows_name_the_zero_row(zero_row):
    X = np.ones((cr.ROW_CHUNK + 5, 3))
    X[zero_row] = 0.0
    message = rf"^embeddings: row {zero_row} is all zeros \(no direction to compare\)$"
    with pytest.raises(ValueError, match=message):
        cr._row_norms(X)
    with pytest.raises(ValueError, match=message):
        cr._unit_rows(X)


def test_unit_rows_scale_rows_to_length_one():
    X = np.array([[3.0, 4.0], [0.0, -2.0], [1e-3, 0.0]])
    np.testing.assert_allclose(cr._unit_rows(X), [[0.6, 0.8], [0.0, -1.0], [1.0, 0.0]], rtol=1e-12)


def test_label_base_refuses_a_zero_row_by_its_index(world, fitted):
    X, responses = world
    X = X.copy()
    X[7] = 0.0
    with pytest.raises(ValueError, match=r"embeddings: row 7 is all zeros"):
        fitted.label_base(X, responses)


@pytest.mark.parametrize(
    "rows",
    [[0], [3], [2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 3, 4], [0, 2, 1, 3], [5, 4, 3], [9, 0], [4, 4], []],
)
def test_unit_subset_divides_the_chosen_rows_by_their_norms(rows):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 4)).astype(np.float32)
    norms = rng.uniform(0.5, 2.0, size=10)  # any lengths: the rows are divided by exactly these
    idx = np.asarray(rows, dtype=np.int64)
    got = cr._unit_subset(X, norms, idx)
    assert got.dtype == np.float64 and got.shape == (len(rows), 4)
    want = np.array([[float(X[r, j]) / norms[r] for j in range(4)] for r in rows]).reshape(len(rows), 4)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_subject_codes_sorted_names_and_indices():
    subjects = np.array(["physics", "law", "math", "law", "biology", "physics"])
    names, codes = cr._subject_codes(subjects)
    assert names == ["biology", "law", "math", "physics"]
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, [3, 1, 2, 1, 0, 3])
    # one character subjects with a longer one: the names are compared whole
    names, codes = cr._subject_codes(np.array(["b", "ab", "a", "b"]))
    assert names == ["a", "ab", "b"]
    np.testing.assert_array_equal(codes, [2, 1, 0, 2])


def test_nan_mean_or_zero_ignores_not_asked():
    nan = np.nan
    scores = np.array([[0.2, nan, nan, 1.0], [0.4, 0.9, nan, -1.0], [0.9, nan, nan, 0.5]])
    np.testing.assert_allclose(cr._nan_mean_or_zero(scores), [0.5, 0.9, 0.0, 0.5 / 3], rtol=1e-12)


# ---------------------------------------------------------------------- subject temperature
def _temperature_data(n: int, seed: int = 3, temp: float = 0.1, n_subjects: int = 3, d: int = 8):
    rng = np.random.default_rng(seed)
    reps = np.linalg.qr(rng.normal(size=(d, n_subjects)))[0].T
    X = reps[rng.integers(0, n_subjects, n)] + rng.normal(scale=0.6, size=(n, d))
    X = unit(X)
    dist = 1.0 - X @ reps.T
    p = np.exp(-(dist - dist.min(axis=1, keepdims=True)) / temp)
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return X, reps, labels


def _grid_mle(X: np.ndarray, reps: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [1e-4, 1] of smallest reference NLL, on a fine grid of log T."""
    dist = 1.0 - X @ reps.T
    log_t = np.linspace(np.log(1e-4), 0.0, 201)
    for _ in range(3):  # a coarse grid, then finer grids around its best point
        values = [reference.softmax_nll(dist, labels, float(np.exp(v))) for v in log_t]
        best = log_t[int(np.argmin(values))]
        step = log_t[1] - log_t[0]
        log_t = np.linspace(max(best - step, np.log(1e-4)), min(best + step, 0.0), 41)
    return float(np.exp(best))


def test_subject_temperature_is_the_likelihood_optimum_over_several_blocks():
    X, reps, labels = _temperature_data(2 * cr.ROW_CHUNK + 300)
    fitted = cr.fit_subject_temperature(X, reps, labels)
    assert fitted == pytest.approx(_grid_mle(X, reps, labels), rel=5e-3)
    assert 0.05 < fitted < 0.2


def test_subject_temperature_with_rows_and_norms():
    X, reps, labels = _temperature_data(3 * cr.ROW_CHUNK, seed=4)
    rows = np.arange(7, X.shape[0], 2)  # a subset that spans every block
    want = _grid_mle(X[rows], reps, labels[rows])
    got = cr.fit_subject_temperature(X, reps, labels[rows], rows=rows)
    assert got == pytest.approx(want, rel=5e-3)
    lengths = np.random.default_rng(0).uniform(0.2, 5.0, size=X.shape[0])
    scaled = (X * lengths[:, None]).astype(np.float32)
    got_scaled = cr.fit_subject_temperature(scaled, reps, labels[rows], rows=rows, norms=lengths)
    assert got_scaled == pytest.approx(want, rel=5e-3)


def test_subject_temperature_stays_within_its_bounds():
    low, high = cr.SUBJECT_TEMP_BOUNDS
    assert (low, high) == (1e-4, 1.0)
    X, reps, labels = _temperature_data(600, seed=5)
    nearest = np.argmax(X @ reps.T, axis=1)
    # labels are always the nearest subject: the sharper the better, down to the lower bound
    assert cr.fit_subject_temperature(X, reps, nearest) == pytest.approx(low, rel=0.05)
    # labels that ignore the distances: the flatter the better, up to the upper bound
    shuffled = np.random.default_rng(6).integers(0, reps.shape[0], size=X.shape[0])
    assert cr.fit_subject_temperature(X, reps, shuffled) == pytest.approx(high, rel=0.05)


def test_two_subjects_already_need_a_temperature():
    X, reps, labels = _temperature_data(400, seed=7, n_subjects=2)
    t = cr.fit_subject_temperature(X, reps, labels)
    assert t == pytest.approx(_grid_mle(X, reps, labels), rel=5e-3) and t > 0


# ---------------------------------------------------------------------- the fitted router
def test_niche_config_carries_every_niche_parameter():
    router = CascalRouter(
        min_consensus=0.3,
        merge_threshold=0.2,
        prune_jaccard=0.5,
        clustering="kmeans",
        linkage="average",
        max_niches=4,
        min_niche_size=7,
        min_silhouette=0.125,
        max_cluster_points=99,
    )
    config = router._niche_config()
    assert config == NicheConfig(
        min_consensus=0.3,
        merge_threshold=0.2,
        prune_jaccard=0.5,
        prune_top=3,
        clustering=ClusteringConfig(
            method="kmeans",
            linkage="average",
            max_k=4,
            min_cluster_size=7,
            min_silhouette=0.125,
            max_points=99,
        ),
    )
    assert isinstance(config.min_consensus, float) and isinstance(config.clustering.max_k, int)


def test_niche_config_defaults_are_the_documented_ones():
    config = CascalRouter()._niche_config()
    assert (config.min_consensus, config.merge_threshold, config.prune_jaccard, config.prune_top) == (
        0.5,
        0.15,
        0.95,
        3,
    )
    c = config.clustering
    assert (c.method, c.linkage, c.max_k, c.min_cluster_size, c.min_silhouette, c.max_points) == (
        "agglomerative",
        "ward",
        5,
        10,
        0.05,
        256,
    )


def _subject_rows(responses: ResponseMatrix, name: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(responses.subjects) == name)


def test_each_subject_niches_come_from_its_own_rows(world):
    """fit runs niche discovery on each subject's unit rows (in row order: the subsample of a large
    proficiency set takes evenly spaced rows of it) with the router's consensus."""
    X, responses = world
    fitted = CascalRouter(random_state=0, max_cluster_points=8, min_niche_size=2).fit(X, responses)
    consensus = reference.consensus_scores(
        responses.answers, responses.n_options, responses.logprobs, ConsensusParams(tau=0.25)
    )
    assert fitted.subject_names_ == sorted(set(responses.subjects.tolist())) == ["sx", "sy", "sz"]
    config = NicheConfig(clustering=ClusteringConfig(max_points=8, min_cluster_size=2))
    for name in fitted.subject_names_:
        rows = _subject_rows(responses, name)
        Xs = unit(X[rows].astype(np.float64))
        want = discover_subject_niches(
            name,
            Xs,
            np.asarray(consensus.scores)[rows],
            np.asarray(consensus.plurality)[rows],
            np.asarray(consensus.agreement)[rows],
            config,
            np.random.default_rng(0),
        )
        got = fitted.niches_[name]
        assert len(got) == len(want) >= 2
        for g, w in zip(got, want):
            assert g.subject == name and g.size == w.size
            np.testing.assert_allclose(g.centroid, w.centroid, atol=1e-6)
            np.testing.assert_allclose(g.scores, w.scores, atol=1e-6)
    assert fitted.model_names_ == MODELS
    assert fitted.embedding_model_ == "emb-x"
    named = CascalRouter(random_state=0, embedding_model="mine").fit(X, responses)
    assert named.embedding_model_ == "mine"


def test_tables_flatten_the_niches_in_subject_order(world, fitted):
    X, responses = world
    flat = [(s, n) for s, name in enumerate(fitted.subject_names_) for n in fitted.niches_[name]]
    assert len(flat) == 6
    np.testing.assert_array_equal(fitted.centroids_, np.vstack([n.centroid for _, n in flat]))
    assert fitted.centroids_.dtype == np.float32
    np.testing.assert_array_equal(fitted.centroid_subject_, [s for s, _ in flat])
    np.testing.assert_array_equal(fitted.centroid_scores_, np.vstack([n.scores for _, n in flat]))
    np.testing.assert_array_equal(fitted.centroid_sizes_, [n.size for _, n in flat])
    assert fitted.centroid_sizes_.sum() == X.shape[0]
    for name in fitted.subject_names_:
        assert sum(n.size for n in fitted.niches_[name]) == _subject_rows(responses, name).size
    # the global ranking: every model's mean consensus score over the questions it was asked
    consensus = reference.consensus_scores(
        responses.answers, responses.n_options, responses.logprobs, ConsensusParams(tau=0.25)
    )
    np.testing.assert_allclose(fitted.global_scores_, nan_mean_or_zero(np.asarray(consensus.scores)), atol=1e-6)


@pytest.mark.parametrize("representative", ["questions", "centroids"])
def test_subject_representatives(world, representative):
    X, responses = world
    router = CascalRouter(random_state=0, subject_representative=representative).fit(X, responses)
    reps = router.subject_reps_
    assert reps.shape == (3, X.shape[1]) and reps.dtype == np.float32
    for s, name in enumerate(router.subject_names_):
        if representative == "questions":
            pool = unit(X[_subject_rows(responses, name)].astype(np.float64))
        else:
            pool = np.vstack([n.centroid for n in router.niches_[name]]).astype(np.float64)
        np.testing.assert_allclose(reps[s], unit(pool.mean(axis=0)), atol=1e-6)
    if representative == "centroids":
        questions = CascalRouter(random_state=0).fit(X, responses)
        assert not np.allclose(reps, questions.subject_reps_, atol=1e-4)


def test_consensus_parameters_reach_the_scores_and_statistics():
    X, responses = make_world(seed=1, logprobs=True)
    params = ConsensusParams(z_scale=2.0, tau=0.5, clamp=(0.2, 0.7))
    router = CascalRouter(random_state=0, z_scale=2.0, tau=0.5, clamp=(0.2, 0.7)).fit(X, responses)
    consensus = reference.consensus_scores(responses.answers, responses.n_options, responses.logprobs, params)
    mu, sigma = reference.consensus_stats(responses.logprobs)
    np.testing.assert_allclose(router.stats_.mu, mu, rtol=1e-5)
    np.testing.assert_allclose(router.stats_.sigma, sigma, rtol=1e-5)
    assert router.stats_.mu.dtype == np.float64 and router.stats_.sigma.dtype == np.float64
    np.testing.assert_allclose(router.global_scores_, nan_mean_or_zero(np.asarray(consensus.scores)), atol=1e-6)
    scores, plurality, agreement = router._score_questions(responses)
    np.testing.assert_allclose(scores, consensus.scores, atol=1e-6)
    assert scores.dtype == np.float64 and plurality.dtype == bool and agreement.dtype == np.float64
    np.testing.assert_array_equal(plurality, consensus.plurality)
    np.testing.assert_allclose(agreement, consensus.agreement, atol=1e-12)


def test_kmeans_niches_of_a_subject_do_not_depend_on_the_other_subjects():
    X, responses = make_world(seed=2)
    router = CascalRouter(random_state=3, clustering="kmeans", min_niche_size=5).fit(X, responses)
    # change every row of another subject: the first subject's niches stay the same
    other = np.asarray(responses.subjects) != "sx"
    X2 = X.copy()
    X2[other] = np.roll(X2[other], 1, axis=1)
    again = CascalRouter(random_state=3, clustering="kmeans", min_niche_size=5).fit(X2, responses)
    for a, b in zip(router.niches_["sx"], again.niches_["sx"], strict=True):
        np.testing.assert_array_equal(a.centroid, b.centroid)
        assert a.size == b.size


def _auto_constants(router: CascalRouter, X: np.ndarray, codes: np.ndarray, quantile: float):
    unit_x = unit(X.astype(np.float64))
    t = router.tables_
    tables = RoutingTables(t.subject_reps, t.centroids, t.centroid_subject, t.centroid_scores, t.global_scores)
    nearest = reference.route_batch(unit_x, tables, RouteParams(top_k=1, subject_temp=0.0)).nearest_distance
    return cr.fit_subject_temperature(unit_x, t.subject_reps, codes), float(np.quantile(nearest, quantile))


def test_auto_constants_are_calibrated_on_every_training_row(world):
    X, responses = world
    router = CascalRouter(random_state=0, fallback_quantile=0.75).fit(X, responses)
    codes = np.searchsorted(router.subject_names_, responses.subjects)
    temp, fallback = _auto_constants(router, X, codes, 0.75)
    assert router.subject_temp_ == pytest.approx(temp, rel=1e-6)
    assert router.fallback_distance_ == pytest.approx(fallback, abs=1e-6)
    assert router.fitted_constants() == {"fallback_distance": router.fallback_distance_, "subject_temp": temp}


def test_numeric_constants_are_floats_as_given(world):
    X, responses = world
    router = CascalRouter(random_state=0, fallback_distance=1, subject_temp=1).fit(X, responses)
    assert type(router.fallback_distance_) is float and router.fallback_distance_ == 1.0
    assert type(router.subject_temp_) is float and router.subject_temp_ == 1.0


def test_calibration_over_many_rows_uses_evenly_spaced_rows(world, fitted, monkeypatch):
    """Beyond the cap both constants come from the evenly spaced rows, their labels aligned, over
    several blocks of rows."""
    rng = np.random.default_rng(8)
    X, responses = world
    n = 10_500
    pick = rng.integers(0, X.shape[0], size=n)
    big = (X[pick] + 0.05 * rng.normal(size=(n, X.shape[1]))).astype(np.float32)
    codes = np.searchsorted(fitted.subject_names_, np.asarray(responses.subjects)[pick])
    router = CascalRouter(random_state=0, fallback_quantile=0.9)
    router.subject_names_ = fitted.subject_names_
    router.tables_ = fitted.tables_
    monkeypatch.setattr(cr, "CALIBRATION_MAX_ENTRIES", 3)
    router._calibrate_routing(big, codes, np.linalg.norm(big.astype(np.float64), axis=1))
    rows = np.unique(np.round(np.linspace(0, n - 1, 10_000)).astype(np.int64))
    temp, fallback = _auto_constants(router, big[rows], codes[rows], 0.9)
    assert router.subject_temp_ == pytest.approx(temp, rel=1e-6)
    assert router.fallback_distance_ == pytest.approx(fallback, abs=1e-6)


# ---------------------------------------------------------------------- niche steps
def test_proficiency_weights_boundaries():
    plurality = np.array([[True, True], [True, False], [False, True], [True, True]])
    agreement = np.array([0.3, 0.29999, 0.6, 0.0])
    w = proficiency_weights(plurality, agreement, 0.3)
    np.testing.assert_array_equal(w, [[0.3, 0.3], [0.0, 0.0], [0.0, 0.6], [0.0, 0.0]])
    # min_consensus 0: any question with some agreement, never one with none
    w0 = proficiency_weights(plurality, agreement, 0.0)
    np.testing.assert_array_equal(w0, [[0.3, 0.3], [0.29999, 0.0], [0.0, 0.6], [0.0, 0.0]])


def test_seed_centroids_one_group_per_model():
    rng = np.random.default_rng(9)
    X = unit(rng.normal(size=(20, 5)))
    weights = np.zeros((20, 3))
    weights[:10, 0] = rng.uniform(0.5, 1.0, 10)
    weights[5:, 2] = rng.uniform(0.5, 1.0, 15)  # model 1 has no proficiency set
    cents, counts = seed_centroids(X, weights, ClusteringConfig(max_k=1), np.random.default_rng(0))
    assert cents.shape == (2, 5) and cents.dtype == np.float64
    np.testing.assert_array_equal(counts, [10.0, 15.0])
    np.testing.assert_allclose(cents[0], unit(weights[:10, 0] @ X[:10]), atol=1e-9)
    np.testing.assert_allclose(cents[1], unit(weights[5:, 2] @ X[5:]), atol=1e-9)


def test_seed_centroids_without_any_set():
    cents, counts = seed_centroids(np.eye(4), np.zeros((4, 2)), ClusteringConfig(), np.random.default_rng(0))
    assert cents.shape == (0, 4) and counts.shape == (0,)


def test_seed_centroids_subsample_large_sets_and_scale_the_counts():
    rng = np.random.default_rng(10)
    X = unit(rng.normal(size=(11, 4)))
    w = rng.uniform(0.5, 1.0, size=(11, 1))
    cents, counts = seed_centroids(X, w, ClusteringConfig(max_k=1, max_points=4), np.random.default_rng(0))
    sub = [0, 3, 7, 10]  # linspace(0, 10, 4) = 0, 3.33, 6.67, 10, rounded
    np.testing.assert_allclose(cents[0], unit(w[sub, 0] @ X[sub]), atol=1e-9)
    np.testing.assert_allclose(counts, [11.0])
    # exactly max_points members: every one is used
    cents, counts = seed_centroids(X[:4], w[:4], ClusteringConfig(max_k=1, max_points=4), np.random.default_rng(0))
    np.testing.assert_allclose(cents[0], unit(w[:4, 0] @ X[:4]), atol=1e-9)
    np.testing.assert_array_equal(counts, [4.0])


def test_seed_centroids_split_a_set_of_two_groups():
    rng = np.random.default_rng(11)
    a, b = np.eye(6)[0], np.eye(6)[3]
    X = unit(np.vstack([a + 0.02 * rng.normal(size=(12, 6)), b + 0.02 * rng.normal(size=(8, 6))]))
    w = np.ones((20, 1))
    config = ClusteringConfig(max_k=3, min_cluster_size=5)
    cents, counts = seed_centroids(X, w, config, np.random.default_rng(0))
    assert sorted(counts.tolist()) == [8.0, 12.0]
    for c, n in zip(cents, counts):
        members = slice(0, 12) if n == 12 else slice(12, 20)
        np.testing.assert_allclose(c, unit(X[members].sum(axis=0)), atol=1e-9)
    # the same set subsampled to 10 points: the counts are scaled back up to the 20 questions
    _, scaled = seed_centroids(
        X, w, ClusteringConfig(max_k=3, min_cluster_size=3, max_points=10), np.random.default_rng(0)
    )
    assert scaled.sum() == pytest.approx(20.0)
    assert sorted(scaled.tolist()) == pytest.approx([8.0, 12.0])


def test_unit_cosine_distances_float32():
    rng = np.random.default_rng(12)
    X = unit(rng.normal(size=(30, 7)))
    X = np.vstack([X, X[:10]]).astype(np.float32)  # duplicates: 1 - x·x rounds around 0
    D = _unit_cosine_distances(X)
    assert D.dtype == np.float32
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0.0) and D.min() >= 0.0
    want = 1.0 - X.astype(np.float64) @ X.astype(np.float64).T
    np.testing.assert_allclose(D, np.maximum(want, 0.0), atol=1e-6)
    assert np.all(D[np.arange(10), np.arange(30, 40)] <= 1e-6)


def test_spherical_means_weighted():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 1, 0, 2])
    w = np.array([1.0, 2.0, 3.0, 0.5])
    got = spherical_means(X, labels, 3, w)
    np.testing.assert_allclose(got, [unit([1.0, 3.0]), [0.0, 1.0], unit([1.0, 1.0])], atol=1e-12)
    # a group with no member stays a zero row
    np.testing.assert_array_equal(spherical_means(X, labels, 4, w)[3], [0.0, 0.0])


def test_merge_threshold_is_strict():
    e = np.eye(3)
    # e0 and e1 are at cosine distance exactly 1
    kept, counts = merge_centroids(e[:2], np.array([1.0, 3.0]), 1.0)
    np.testing.assert_array_equal(kept, e[:2])
    np.testing.assert_array_equal(counts, [1.0, 3.0])
    merged, counts = merge_centroids(e[:2], np.array([1.0, 3.0]), 1.0 + 1e-9)
    np.testing.assert_allclose(merged, [unit([1.0, 3.0, 0.0])], atol=1e-12)
    np.testing.assert_array_equal(counts, [4.0])


def test_merge_recomputes_the_merged_centre_distances():
    # a and b are close; their merged centre is close to c while a and b each are not
    a, b = unit([1.0, 0.1, 0.0]), unit([1.0, -0.1, 0.0])
    c = unit([1.0, 0.0, 0.25])
    dist = lambda u, v: 1.0 - float(u @ v)  # noqa: E731
    m = unit(a + b)
    threshold = 0.032
    assert dist(a, b) < threshold and dist(m, c) < threshold
    assert dist(a, c) > threshold and dist(b, c) > threshold
    merged, counts = merge_centroids(np.vstack([c, a, b]), np.array([2.0, 1.0, 1.0]), threshold)
    want = 2.0 * c + 2.0 * m  # (a + b) merged to m with count 2, then 2c + 2m
    np.testing.assert_allclose(merged, [unit(want)], atol=1e-12)
    np.testing.assert_array_equal(counts, [4.0])
    # a merged centre that moved away from a third centre no longer merges with it
    at = lambda angle: np.array([np.cos(angle), 0.0, np.sin(angle)])  # noqa: E731
    p, q, far = at(0.0), at(0.3), at(-0.4)
    assert dist(p, q) < dist(p, far) < 0.1
    merged, counts = merge_centroids(np.vstack([p, q, far]), np.array([1.0, 9.0, 1.0]), 0.1)
    pq = unit(p + 9.0 * q)
    assert dist(pq, far) > 0.1
    np.testing.assert_allclose(merged, [pq, far], atol=1e-12)
    np.testing.assert_array_equal(counts, [10.0, 1.0])


def test_merge_takes_the_closest_pair_first_and_keeps_input_order():
    # centroids 1 and 2 are the closest pair; 0 and 1 are close too but farther
    c0, c1, c2, c3 = unit([1.0, 0.3, 0.0, 0.0]), unit([1.0, 0.0, 0.0, 0.0]), unit([1.0, -0.1, 0.0, 0.0]), np.eye(4)[3]
    cents = np.vstack([c0, c1, c2, c3])
    before = cents.copy()
    counts = np.array([1.0, 1.0, 1.0, 5.0])
    merged, out = merge_centroids(cents, counts, 1.0 - float(c0 @ unit(c1 + c2)) - 1e-9)
    np.testing.assert_allclose(merged, [c0, unit(c1 + c2), c3], atol=1e-12)
    np.testing.assert_array_equal(out, [1.0, 2.0, 5.0])
    np.testing.assert_array_equal(cents, before)
    np.testing.assert_array_equal(counts, [1.0, 1.0, 1.0, 5.0])


def test_merge_ties_go_to_the_first_pair():
    # 0-1 and 1-2 at the same distance; merging 0 and 1 first moves the centre away from 2
    s = np.sqrt(0.5)
    c0, c1, c2 = np.array([1.0, 0.0]), np.array([s, s]), np.array([0.0, 1.0])
    merged, counts = merge_centroids(np.vstack([c0, c1, c2]), np.array([1.0, 1.0, 1.0]), 0.3)
    np.testing.assert_allclose(merged, [unit(c0 + c1), c2], atol=1e-12)
    np.testing.assert_array_equal(counts, [2.0, 1.0])


def test_merge_of_one_or_no_centroid():
    merged, counts = merge_centroids(np.eye(3)[:1], np.array([2.0]), 2.0)
    np.testing.assert_array_equal(merged, np.eye(3)[:1])
    np.testing.assert_array_equal(counts, [2.0])
    merged, counts = merge_centroids(np.zeros((0, 3)), np.zeros(0), 2.0)
    assert merged.shape == (0, 3) and counts.shape == (0,)


def test_assign_and_score_drops_empty_centroids():
    nan = np.nan
    cents = np.eye(3)
    X = unit(np.array([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [1.0, 0.0, 0.1], [0.1, 0.0, 1.0]]))
    scores = np.array([[0.2, nan], [0.5, nan], [0.4, 0.7], [0.9, nan]])
    labels, kept, niche_scores = assign_and_score(X, scores, cents)
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])
    np.testing.assert_array_equal(kept, cents[[0, 2]])
    np.testing.assert_allclose(niche_scores, [[0.3, 0.7], [0.7, 0.0]], atol=1e-12)


def test_top_sets_ties_go_to_the_lower_column():
    sets = _top_sets(np.array([[0.5, 0.5, 0.5, 0.1], [0.1, 0.2, 0.2, 0.9]]), 2)
    assert sets == [frozenset({0, 1}), frozenset({3, 1})]
    # a larger pool with many tied models: still the lowest columns among the tied
    tied = np.full((1, 17), 0.5)
    tied[0, 16] = 0.9
    assert _top_sets(tied, 3) == [frozenset({16, 0, 1})]


def _prune(X, scores, labels, jaccard=0.95, top=3):
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    cents = unit(np.vstack([X[labels == c].mean(axis=0) for c in range(k)]))
    niche_scores = np.vstack([np.nanmean(scores[labels == c], axis=0) for c in range(k)])
    return prune_niches(X, scores, labels, cents, niche_scores, jaccard, top)


def test_prune_equal_sizes_fold_the_later_niche():
    e = np.eye(4)
    X = e[[0, 0, 1, 1]] + 0.01 * np.eye(4)[[2, 3, 2, 3]]
    X = unit(X)
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1], [0.7, 0.9, 0.8, 0.2], [0.7, 0.9, 0.8, 0.2]])
    labels, cents, ns = _prune(X, scores, [0, 0, 1, 1])
    np.testing.assert_array_equal(labels, [0, 0, 0, 0])
    np.testing.assert_allclose(cents, [unit(X.mean(axis=0))], atol=1e-12)
    np.testing.assert_allclose(ns, [scores.mean(axis=0)], atol=1e-12)
    # the larger niche keeps its place: here the second one
    labels, cents, _ = _prune(X[[0, 2, 3]], scores[[0, 2, 3]], [0, 1, 1])
    np.testing.assert_array_equal(labels, [0, 0, 0])


def test_prune_keeps_the_larger_niche_and_renumbers():
    X = unit(np.eye(4)[[0, 1, 1, 1, 2, 3]] + 0.01)
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.1],  # niche 0: top-3 {0, 1, 2}
            [0.1, 0.9, 0.8, 0.7],  # niche 1: top-3 {1, 2, 3}
            [0.1, 0.9, 0.8, 0.7],
            [0.1, 0.9, 0.8, 0.7],
            [0.8, 0.9, 0.1, 0.7],  # niche 2: top-3 {0, 1, 3}
            [0.2, 0.7, 0.8, 0.9],  # niche 3: top-3 {1, 2, 3}, folds into niche 1 (3 questions)
        ]
    )
    labels, cents, ns = _prune(X, scores, [0, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 2, 1])
    assert cents.shape == (3, 4)
    np.testing.assert_allclose(cents[1], unit(X[[1, 2, 3, 5]].mean(axis=0)), atol=1e-12)
    np.testing.assert_allclose(cents[2], unit(X[4]), atol=1e-12)
    np.testing.assert_allclose(ns[1], scores[[1, 2, 3, 5]].mean(axis=0), atol=1e-12)
    # at Jaccard 0.5 niche 0 ({0,1,2}) and 2 ({0,1,3}) fold as well, then all: one niche
    labels, cents, ns = _prune(X, scores, [0, 1, 1, 1, 2, 3], jaccard=0.5)
    np.testing.assert_array_equal(labels, np.zeros(6))
    np.testing.assert_allclose(ns, [scores.mean(axis=0)], atol=1e-12)
    # a threshold just above 0.5: only the identical sets fold
    labels, _, _ = _prune(X, scores, [0, 1, 1, 1, 2, 3], jaccard=0.5 + 1e-9)
    assert labels.max() == 2
    # top-1 sets: niches 1, 2, 3 ({1}, {1}, {3}) -> 1 and 2 fold (the larger, niche 1, stays)
    labels, _, _ = _prune(X, scores, [0, 1, 1, 1, 2, 3], top=1)
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 1, 2])


def test_prune_folds_the_most_similar_then_closest_pair_first():
    # niches 0, 1, 2 share a top-3 set; 1 and 2 are the closest pair and fold first, then 0 joins
    # them (the folded niche is larger); the order shows in which centroid survives first
    X = unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.2], [0.0, 1.0, 0.3]]))
    scores = np.tile([0.9, 0.8, 0.7, 0.1], (4, 1))
    labels = np.array([0, 1, 1, 2])
    cents = unit(np.vstack([X[0], X[1:3].mean(axis=0), X[3]]))
    ns = np.tile([0.9, 0.8, 0.7, 0.1], (3, 1))
    out_labels, out_cents, _ = prune_niches(X, scores, labels, cents, ns, 1.0, 3)
    np.testing.assert_array_equal(out_labels, np.zeros(4))
    np.testing.assert_allclose(out_cents, [unit(X.mean(axis=0))], atol=1e-12)
    # stop after the first fold: a fourth niche with a different set survives, and the first fold
    # was 1 + 2 (closest) into niche 1 (2 questions), not 0 + 1
    X4 = np.vstack([X, [[0.0, 0.0, 1.0]]])
    scores4 = np.vstack([scores, [[0.1, 0.2, 0.3, 0.9]]])
    labels4 = np.array([0, 1, 1, 2, 3])
    cents4 = np.vstack([cents, [[0.0, 0.0, 1.0]]])
    ns4 = np.vstack([ns, [[0.1, 0.2, 0.3, 0.9]]])
    out_labels, out_cents, _ = prune_niches(X4, scores4, labels4, cents4, ns4, 1.0, 3)
    np.testing.assert_array_equal(out_labels, [0, 0, 0, 0, 1])
    np.testing.assert_allclose(out_cents[1], [0.0, 0.0, 1.0])


def test_prune_does_not_change_its_inputs():
    X = unit(np.eye(3)[[0, 1]] + 0.01)
    scores = np.array([[0.9, 0.5, 0.1, 0.0], [0.9, 0.5, 0.1, 0.0]])
    labels = np.array([0, 1])
    cents = X.copy()
    ns = scores.copy()
    prune_niches(X, scores, labels, cents, ns, 0.95, 3)
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(cents, X)
    np.testing.assert_array_equal(ns, scores)


def test_subject_without_consensus_gets_one_centred_niche():
    rng = np.random.default_rng(13)
    X = unit(rng.normal(size=(9, 4)))
    scores = rng.uniform(size=(9, 3))
    scores[:, 2] = np.nan
    plurality = np.ones((9, 3), dtype=bool)
    agreement = np.full(9, 0.49)
    niches = discover_subject_niches("law", X, scores, plurality, agreement, NicheConfig(), np.random.default_rng(0))
    assert len(niches) == 1
    (niche,) = niches
    assert niche.subject == "law" and niche.size == 9 and niche.centroid.dtype == np.float32
    np.testing.assert_allclose(niche.centroid, unit(X.mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(niche.scores, [scores[:, 0].mean(), scores[:, 1].mean(), 0.0], atol=1e-12)


def test_discovered_niches_follow_the_config():
    """Two proficiency sets far apart: two niches of the right sizes; merge_threshold above their
    distance: one; the models' scores decide the niche scores."""
    rng = np.random.default_rng(14)
    e = np.eye(5)
    X = unit(np.vstack([e[0] + 0.02 * rng.normal(size=(7, 5)), e[1] + 0.02 * rng.normal(size=(5, 5))]))
    group = np.repeat([0, 1], [7, 5])
    scores = np.where(group[:, None] == np.arange(4)[None, :], 1.0, 0.0)  # model g is right on group g
    scores[:, 2] = 0.5
    plurality = scores == 1.0
    agreement = np.full(12, 0.6)
    config = NicheConfig(prune_jaccard=1.0, prune_top=1, clustering=ClusteringConfig(max_k=1))
    niches = discover_subject_niches("s", X, scores, plurality, agreement, config, np.random.default_rng(0))
    assert sorted(n.size for n in niches) == [5, 7]
    for n in niches:
        g = 0 if n.size == 7 else 1
        np.testing.assert_allclose(n.centroid, unit(X[group == g].mean(axis=0)), atol=1e-6)
        np.testing.assert_allclose(n.scores, scores[group == g].mean(axis=0), atol=1e-12)

    def sizes(config: NicheConfig) -> list[int]:
        found = discover_subject_niches("s", X, scores, plurality, agreement, config, np.random.default_rng(0))
        return sorted(n.size for n in found)

    one = ClusteringConfig(max_k=1)
    # min_consensus above the agreement: no set, one niche of all questions
    assert sizes(NicheConfig(min_consensus=0.61, clustering=one)) == [12]
    # merging everything closer than cosine distance 1.5: one niche
    assert sizes(NicheConfig(merge_threshold=1.5, clustering=one)) == [12]
    # top-2 sets {0, 2} and {1, 2} (Jaccard 1/3): kept apart at 0.34, folded at 0.33
    assert sizes(NicheConfig(prune_jaccard=0.34, prune_top=2, clustering=one)) == [5, 7]
    assert sizes(NicheConfig(prune_jaccard=0.33, prune_top=2, clustering=one)) == [12]


def test_fit_niches_computes_the_row_norms_when_not_given(world, fitted):
    X, responses = world
    router = CascalRouter(random_state=0)
    scores, plurality, agreement = router._score_questions(responses)
    router._fit_niches(X, responses, scores, plurality, agreement)
    np.testing.assert_array_equal(router.centroids_, fitted.centroids_)
    np.testing.assert_array_equal(router.subject_reps_, fitted.subject_reps_)
    assert router.fallback_distance_ == fitted.fallback_distance_


def test_a_single_subject_pool():
    X, responses = make_world(seed=4, n_subjects=1)
    router = CascalRouter(random_state=0).fit(X, responses)
    assert router.subject_names_ == ["sz"] and list(router.niches_) == ["sz"]
    assert len(router.niches_["sz"]) == 2 and router.centroid_sizes_.sum() == X.shape[0]
    assert router.subject_temp_ == 0.0  # nothing to weigh
    np.testing.assert_allclose(router.subject_reps_[0], unit(unit(X.astype(np.float64)).mean(axis=0)), atol=1e-6)


def test_kmeans_niches_are_reproducible_for_a_random_state():
    """Without structure the k-means starts decide the niches: the same ``random_state`` gives the
    same niches, another one other niches (docs/algorithm.md#determinism)."""
    rng = np.random.default_rng(15)
    n = 240
    X = rng.normal(size=(n, 5)).astype(np.float32)
    answers = rng.integers(0, 2, size=(n, 8))
    names = [f"m{i}" for i in range(8)]
    responses = ResponseMatrix(
        answers=answers, n_options=np.full(n, 2), subjects=np.repeat(["a", "b"], n // 2), model_names=names
    )

    def centroids(seed: int) -> np.ndarray:
        router = CascalRouter(
            random_state=seed, clustering="kmeans", min_niche_size=3, min_silhouette=-1.0, merge_threshold=0.0
        )
        return router.fit(X, responses).centroids_

    first = centroids(7)
    np.testing.assert_array_equal(first, centroids(7))
    assert any(c.shape != first.shape or not np.allclose(c, first) for c in (centroids(8), centroids(9)))


@pytest.mark.parametrize("quantile", [0.0, 1.0])
def test_auto_fallback_at_the_extreme_quantiles_is_the_smallest_or_largest_distance(world, quantile):
    X, responses = world
    router = CascalRouter(random_state=0, fallback_quantile=quantile).fit(X, responses)
    codes = np.searchsorted(router.subject_names_, responses.subjects)
    _, fallback = _auto_constants(router, X, codes, quantile)
    assert router.fallback_distance_ == pytest.approx(fallback, abs=1e-6)
    assert fallback > 0.0


def test_merged_centre_is_a_unit_vector_whatever_the_counts():
    a, b = unit([1.0, 0.1, 0.0]), unit([1.0, -0.1, 0.0])
    merged, counts = merge_centroids(np.vstack([a, b]), np.array([0.25, 0.125]), 0.15)
    np.testing.assert_allclose(merged, [unit(0.25 * a + 0.125 * b)], atol=1e-12)
    np.testing.assert_array_equal(counts, [0.375])


def test_every_row_counts_in_the_subject_temperature():
    """Four rows: three labelled with their nearest subject, the first one with the far subject;
    that one row keeps the temperature away from the lower bound."""
    reps = np.eye(2)
    X = unit(np.array([[1.0, 0.2], [1.0, 0.1], [0.1, 1.0], [0.3, 1.0]]))
    labels = np.array([1, 0, 1, 1])
    want = _grid_mle(X, reps, labels)
    assert want > 0.1
    assert cr.fit_subject_temperature(X, reps, labels) == pytest.approx(want, rel=5e-3)
    assert cr.fit_subject_temperature(X[1:], reps, labels[1:]) < 0.01  # without it: as sharp as it gets


def _one_question_niches(centres: np.ndarray, scores: np.ndarray, labels) -> tuple:
    labels = np.asarray(labels)
    X = unit(centres[labels])
    k = int(labels.max()) + 1
    cents = unit(np.vstack([X[labels == c].mean(axis=0) for c in range(k)]))
    niche_scores = np.vstack([scores[labels == c].mean(axis=0) for c in range(k)])
    return X, cents, niche_scores


def test_prune_folded_niche_takes_the_place_of_the_larger_or_the_earlier():
    """Niche 0 (one question) and niche 2 (two questions) share their top-3 set, niche 1 does not:
    niche 0 joins niche 2, which stays after niche 1; with equal sizes the earlier one stays."""
    e = np.eye(3)
    a = np.array([0.9, 0.8, 0.7, 0.1])
    other = np.array([0.1, 0.2, 0.3, 0.9])
    scores = np.vstack([a, other, a, a])
    X, cents, ns = _one_question_niches(e, scores, [0, 1, 2, 2])
    labels, out, _ = prune_niches(X, scores, np.array([0, 1, 2, 2]), cents, ns, 0.95, 3)
    np.testing.assert_array_equal(labels, [1, 0, 1, 1])
    np.testing.assert_allclose(out[0], e[1], atol=1e-12)
    # equal sizes: niche 0 stays in front, niche 2 folds into it
    X, cents, ns = _one_question_niches(e, scores[:3], [0, 1, 2])
    labels, out, _ = prune_niches(X, scores[:3], np.array([0, 1, 2]), cents, ns, 0.95, 3)
    np.testing.assert_array_equal(labels, [0, 1, 0])
    np.testing.assert_allclose(out[1], e[1], atol=1e-12)


def test_prune_full_ties_fold_the_first_pair():
    """Three niches, every pair at Jaccard 0.5 and the same centroid distance: the first pair (0, 1)
    folds; its joined scores rank {0, 1, 4} on top, too far from niche 2's set to fold again."""
    scores = np.array(
        [
            [0.9, 0.85, 0.8, 0.0, 0.7],  # {0, 1, 2}
            [0.9, 0.85, 0.0, 0.8, 0.7],  # {0, 1, 3}
            [0.9, 0.0, 0.8, 0.85, 0.1],  # {0, 2, 3}
        ]
    )
    X, cents, ns = _one_question_niches(np.eye(3), scores, [0, 1, 2])
    labels, out, out_scores = prune_niches(X, scores, np.array([0, 1, 2]), cents, ns, 0.5, 3)
    np.testing.assert_array_equal(labels, [0, 0, 1])
    np.testing.assert_allclose(out_scores, [scores[:2].mean(axis=0), scores[2]], atol=1e-12)


def test_prune_in_one_dimension():
    X = np.array([[1.0], [1.0], [-1.0]])
    scores = np.array([[0.9, 0.8, 0.7, 0.1]] * 3)
    labels = np.array([0, 0, 1])
    cents = np.array([[1.0], [-1.0]])
    out_labels, out, _ = prune_niches(X, scores, labels, cents, scores[:2].copy(), 0.95, 3)
    np.testing.assert_array_equal(out_labels, [0, 0, 0])
    np.testing.assert_allclose(out, [[1.0]])


def test_a_one_model_pool_fits_and_routes_to_it():
    """The calibration probe asks for one model only, so a pool of one model fits (with top_k=1)."""
    rng = np.random.default_rng(16)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    responses = ResponseMatrix(
        answers=rng.integers(0, 4, size=(40, 1)),
        n_options=np.full(40, 4),
        subjects=np.repeat(["a", "b"], 20),
        model_names=["solo"],
    )
    router = CascalRouter(random_state=0, top_k=1).fit(X, responses)
    assert router.fallback_distance_ > 0.0
    np.testing.assert_array_equal(router.route(X).ranked, np.zeros((40, 1)))
