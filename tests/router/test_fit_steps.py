"""The steps of :meth:`CascalRouter.fit` (:mod:`cascal.router.fitting`, :mod:`cascal.router.calibration`,
:mod:`cascal.router.geometry`) pinned on small inputs whose results are derived here independently (by
hand, or with plain numpy and the numpy references): the row geometry, the consensus and its
parameters, the niche search per subject, the routing tables, the calibrated routing constants, and
that the steps called in order are the fit.

docs/algorithm.md#skill-niches describes the niche steps, #subject-assignment the subject
temperature, #fallback-to-the-global-ranking the calibrated fallback distance.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascal import reference
from cascal.data import NOT_ASKED, ResponseMatrix
from cascal.errors import DataError
from cascal.kernels import ConsensusParams, RouteParams, RoutingTables
from cascal.router import CascalRouter, calibration, fitting, geometry
from cascal.router.clustering import ClusteringConfig
from cascal.router.niches import NicheConfig, discover_subject_niches
from cascal.vectors import unit_rows

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


def test_calibration_rows_of_one_subject_use_the_whole_budget():
    np.testing.assert_array_equal(calibration.calibration_rows(30_000, 1, 40_000), np.arange(30_000))
    assert calibration.calibration_rows(30_000, 2, 40_000).size == 20_000
    assert calibration.calibration_rows(30_000, 0, 40_000).size == 30_000


def test_calibration_rows_cap_boundary():
    cap = calibration.CALIBRATION_MAX_ENTRIES // 1000
    assert cap > 10_000
    np.testing.assert_array_equal(calibration.calibration_rows(cap, 1000), np.arange(cap))
    rows = calibration.calibration_rows(cap + 1, 1000)
    assert rows.size == cap and rows[0] == 0 and rows[-1] == cap
    assert rows.dtype == np.int64 and set(np.diff(rows).tolist()) <= {1, 2}
    # no subject: the cap is the whole budget; a huge pool of subjects: never fewer than 10,000 rows
    np.testing.assert_array_equal(calibration.calibration_rows(20_000, 0), np.arange(20_000))
    np.testing.assert_array_equal(calibration.calibration_rows(10_000, 1 << 24), np.arange(10_000))
    few = calibration.calibration_rows(10_001, 1 << 24)
    assert few.size == 10_000 and few[0] == 0 and few[-1] == 10_000
    np.testing.assert_array_equal(few, np.unique(np.round(np.linspace(0, 10_000, 10_000)).astype(int)))


def test_row_norms_over_several_blocks():
    rng = np.random.default_rng(1)
    n = 2 * geometry.ROW_CHUNK + 7
    X = (rng.normal(size=(n, 3)) * rng.uniform(0.1, 10, size=(n, 1))).astype(np.float32)
    norms = geometry.row_norms(X)
    assert norms.dtype == np.float64 and norms.shape == (n,)
    want = np.sqrt((X.astype(np.float64) ** 2).sum(axis=1))
    np.testing.assert_allclose(norms, want, rtol=1e-12)
    # unit rows are fine: only a zero row is refused
    np.testing.assert_array_equal(geometry.row_norms(np.eye(3, dtype=np.float32)), np.ones(3))


@pytest.mark.parametrize("bad_row", [0, 5, geometry.ROW_CHUNK + 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_row_norms_refuse_non_finite_rows_in_any_block(bad_row, bad):
    X = np.ones((geometry.ROW_CHUNK + 10, 2))
    X[bad_row, 1] = bad
    with pytest.raises(ValueError, match=r"^embeddings: contains NaN or infinite values$"):
        geometry.row_norms(X)


@pytest.mark.parametrize("zero_row", [0, 4, geometry.ROW_CHUNK + 1])
def test_row_norms_and_unit_rows_name_the_zero_row(zero_row):
    X = np.ones((geometry.ROW_CHUNK + 5, 3))
    X[zero_row] = 0.0
    message = rf"^embeddings: row {zero_row} is all zeros \(no direction to compare\)$"
    with pytest.raises(ValueError, match=message):
        geometry.row_norms(X)
    with pytest.raises(DataError, match=message):  # the router's one normalisation of whole matrices
        unit_rows(X, zero_rows="refuse")


def test_unit_rows_scale_rows_to_length_one():
    X = np.array([[3.0, 4.0], [0.0, -2.0], [1e-3, 0.0]])
    np.testing.assert_allclose(unit_rows(X, zero_rows="refuse"), [[0.6, 0.8], [0.0, -1.0], [1.0, 0.0]], rtol=1e-12)


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
    got = geometry.unit_subset(X, norms, idx)
    assert got.dtype == np.float64 and got.shape == (len(rows), 4)
    want = np.array([[float(X[r, j]) / norms[r] for j in range(4)] for r in rows]).reshape(len(rows), 4)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_subject_codes_sorted_names_and_indices():
    subjects = np.array(["physics", "law", "math", "law", "biology", "physics"])
    names, codes = geometry.subject_codes(subjects)
    assert names == ["biology", "law", "math", "physics"]
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, [3, 1, 2, 1, 0, 3])
    # one character subjects with a longer one: the names are compared whole
    names, codes = geometry.subject_codes(np.array(["b", "ab", "a", "b"]))
    assert names == ["a", "ab", "b"]
    np.testing.assert_array_equal(codes, [2, 1, 0, 2])


def test_global_model_scores_ignore_not_asked():
    nan = np.nan
    scores = np.array([[0.2, nan, nan, 1.0], [0.4, 0.9, nan, -1.0], [0.9, nan, nan, 0.5]])
    np.testing.assert_allclose(fitting.global_model_scores(scores), [0.5, 0.9, 0.0, 0.5 / 3], rtol=1e-12)


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
    X, reps, labels = _temperature_data(2 * geometry.ROW_CHUNK + 300)
    fitted = calibration.fit_subject_temperature(X, reps, labels)
    assert fitted == pytest.approx(_grid_mle(X, reps, labels), rel=5e-3)
    assert 0.05 < fitted < 0.2


def test_subject_temperature_with_rows_and_norms():
    X, reps, labels = _temperature_data(3 * geometry.ROW_CHUNK, seed=4)
    rows = np.arange(7, X.shape[0], 2)  # a subset that spans every block
    want = _grid_mle(X[rows], reps, labels[rows])
    got = calibration.fit_subject_temperature(X, reps, labels[rows], rows=rows)
    assert got == pytest.approx(want, rel=5e-3)
    lengths = np.random.default_rng(0).uniform(0.2, 5.0, size=X.shape[0])
    scaled = (X * lengths[:, None]).astype(np.float32)
    got_scaled = calibration.fit_subject_temperature(scaled, reps, labels[rows], rows=rows, norms=lengths)
    assert got_scaled == pytest.approx(want, rel=5e-3)


def test_subject_temperature_stays_within_its_bounds():
    low, high = calibration.SUBJECT_TEMP_BOUNDS
    assert (low, high) == (1e-4, 1.0)
    X, reps, labels = _temperature_data(600, seed=5)
    nearest = np.argmax(X @ reps.T, axis=1)
    # labels are always the nearest subject: the sharper the better, down to the lower bound
    assert calibration.fit_subject_temperature(X, reps, nearest) == pytest.approx(low, rel=0.05)
    # labels that ignore the distances: the flatter the better, up to the upper bound
    shuffled = np.random.default_rng(6).integers(0, reps.shape[0], size=X.shape[0])
    assert calibration.fit_subject_temperature(X, reps, shuffled) == pytest.approx(high, rel=0.05)


def test_two_subjects_already_need_a_temperature():
    X, reps, labels = _temperature_data(400, seed=7, n_subjects=2)
    t = calibration.fit_subject_temperature(X, reps, labels)
    assert t == pytest.approx(_grid_mle(X, reps, labels), rel=5e-3) and t > 0


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
    config = fitting.niche_config(router.get_params())
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
    config = fitting.niche_config(CascalRouter().get_params())
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
    consensus = fitting.score_consensus(responses, fitting.consensus_params(router.get_params()))
    assert fitting.consensus_params(router.get_params()) == params
    np.testing.assert_array_equal(consensus.stats.mu, router.stats_.mu)
    scores, plurality, agreement = consensus.scores, consensus.plurality, consensus.agreement
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


def _auto_constants(t: RoutingTables, X: np.ndarray, codes: np.ndarray, quantile: float):
    """Both "auto" constants by the definitions of docs/algorithm.md, with the numpy reference."""
    unit_x = unit(X.astype(np.float64))
    tables = RoutingTables(t.subject_reps, t.centroids, t.centroid_subject, t.centroid_scores, t.global_scores)
    nearest = reference.route_batch(unit_x, tables, RouteParams(top_k=1, subject_temp=0.0)).nearest_distance
    return calibration.fit_subject_temperature(unit_x, t.subject_reps, codes), float(np.quantile(nearest, quantile))


def test_auto_constants_are_calibrated_on_every_training_row(world):
    X, responses = world
    router = CascalRouter(random_state=0, fallback_quantile=0.75).fit(X, responses)
    codes = np.searchsorted(router.subject_names_, responses.subjects)
    temp, fallback = _auto_constants(router.tables_, X, codes, 0.75)
    assert router.subject_temp_ == pytest.approx(temp, rel=1e-6)
    assert router.fallback_distance_ == pytest.approx(fallback, abs=1e-6)
    assert router.fitted_constants() == {"fallback_distance": router.fallback_distance_, "subject_temp": temp}


def test_numeric_constants_are_floats_as_given(world):
    X, responses = world
    router = CascalRouter(random_state=0, fallback_distance=1, subject_temp=1).fit(X, responses)
    assert type(router.fallback_distance_) is float and router.fallback_distance_ == 1.0
    assert type(router.subject_temp_) is float and router.subject_temp_ == 1.0


def test_calibration_over_many_rows_uses_evenly_spaced_rows(world, fitted):
    """Beyond the cap both constants come from the evenly spaced rows, their labels aligned, over
    several blocks of rows."""
    rng = np.random.default_rng(8)
    X, responses = world
    n = 10_500
    pick = rng.integers(0, X.shape[0], size=n)
    big = (X[pick] + 0.05 * rng.normal(size=(n, X.shape[1]))).astype(np.float32)
    codes = np.searchsorted(fitted.subject_names_, np.asarray(responses.subjects)[pick])
    norms = np.linalg.norm(big.astype(np.float64), axis=1)
    got = calibration.routing_constants(
        big,
        norms,
        codes,
        fitted.tables_,
        subject_temp="auto",
        fallback_distance="auto",
        fallback_quantile=0.9,
        max_entries=3,
    )
    rows = np.unique(np.round(np.linspace(0, n - 1, 10_000)).astype(np.int64))
    temp, fallback = _auto_constants(fitted.tables_, big[rows], codes[rows], 0.9)
    assert got.subject_temp == pytest.approx(temp, rel=1e-6)
    assert got.fallback_distance == pytest.approx(fallback, abs=1e-6)
    # numbers are kept as given, whatever the rows
    fixed = calibration.routing_constants(
        big, norms, codes, fitted.tables_, subject_temp=0.5, fallback_distance=2, fallback_quantile=0.9
    )
    assert fixed == calibration.RoutingConstants(subject_temp=0.5, fallback_distance=2.0)
    assert type(fixed.fallback_distance) is float


def test_the_public_steps_in_order_are_the_fit(world, fitted):
    """consensus -> niches -> routing tables -> calibration on the raw rows (their lengths given)
    reproduce the fitted router bit for bit."""
    X, responses = world
    params = fitted.get_params()
    consensus = fitting.score_consensus(responses, fitting.consensus_params(params))
    norms = geometry.row_norms(X)
    found = fitting.find_niches(
        X,
        norms,
        responses.subjects,
        consensus,
        fitting.niche_config(params),
        representative="questions",
        random_state=0,
    )
    tables = fitting.routing_tables(found, fitting.global_model_scores(consensus.scores), len(MODELS))
    constants = calibration.routing_constants(
        X, norms, found.subject_index, tables, subject_temp="auto", fallback_distance="auto", fallback_quantile=0.99
    )
    assert found.subject_names == fitted.subject_names_
    np.testing.assert_array_equal(found.subject_index, np.searchsorted(fitted.subject_names_, responses.subjects))
    for field in (
        "subject_reps",
        "centroids",
        "centroid_subject",
        "centroid_scores",
        "global_scores",
        "centroid_sizes",
    ):
        np.testing.assert_array_equal(getattr(tables, field), getattr(fitted.tables_, field), err_msg=field)
    assert constants.subject_temp == fitted.subject_temp_ and constants.fallback_distance == fitted.fallback_distance_
    # the niches a loaded router rebuilds from these tables are the fitted ones
    rebuilt = fitting.niches_from_tables(tables, found.subject_names)
    for name in found.subject_names:
        assert [(n.subject, n.size) for n in rebuilt[name]] == [(n.subject, n.size) for n in found.niches[name]]
        for a, b in zip(rebuilt[name], found.niches[name], strict=True):
            np.testing.assert_array_equal(a.centroid, b.centroid)
            np.testing.assert_array_equal(a.scores, b.scores)


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
    _, fallback = _auto_constants(router.tables_, X, codes, quantile)
    assert router.fallback_distance_ == pytest.approx(fallback, abs=1e-6)
    assert fallback > 0.0


def test_every_row_counts_in_the_subject_temperature():
    """Four rows: three labelled with their nearest subject, the first one with the far subject;
    that one row keeps the temperature away from the lower bound."""
    reps = np.eye(2)
    X = unit(np.array([[1.0, 0.2], [1.0, 0.1], [0.1, 1.0], [0.3, 1.0]]))
    labels = np.array([1, 0, 1, 1])
    want = _grid_mle(X, reps, labels)
    assert want > 0.1
    assert calibration.fit_subject_temperature(X, reps, labels) == pytest.approx(want, rel=5e-3)
    assert calibration.fit_subject_temperature(X[1:], reps, labels[1:]) < 0.01  # without it: as sharp as it gets


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
