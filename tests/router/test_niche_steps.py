"""Each step of niche discovery pinned on hand-built inputs (docs/algorithm.md#skill-niches), and the
niche step pinned end to end on a synthetic answer set whose within-subject niches are known
(:func:`cascal.simulate.niche_data.within_subject_niches`).

The hand-built subject: four tight groups of questions, each the proficiency set of one model
(agreement 0.8, one group per set: ``max_k=1``), so the seed centroids are the group directions:

- G0 = e0 and G1 (cosine distance 0.3 from G0) share the top-3 model set {0, 1, 2};
- G2 = e2 and G3 (cosine distance 0.5 from G2) have top-3 sets {1, 2, 3} and {0, 2, 3}
  (Jaccard 2/4 = 0.5).

With ``merge_threshold=0.15`` nothing merges; pruning at ``prune_jaccard=0.95`` folds G0 and G1 (same
top-3 set): 3 niches. Merging at 0.95 instead merges G0+G1 and G2+G3: 2 niches. No pruning: 4.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascal.router import CascalRouter
from cascal.router.clustering import ClusteringConfig
from cascal.router.niches import NicheConfig, discover_subject_niches
from cascal.simulate.niche_data import within_subject_niches

PER_GROUP = 12


def _direction(a: np.ndarray, b: np.ndarray, distance: float) -> np.ndarray:
    """The unit vector in span(a, b) at cosine distance ``distance`` from unit ``a`` (a ⟂ b)."""
    cos = 1.0 - distance
    return cos * a + np.sqrt(1.0 - cos**2) * b


def hand_built_subject():
    e = np.eye(6)
    centres = [e[0], _direction(e[0], e[1], 0.3), e[2], _direction(e[2], e[3], 0.5)]
    rng = np.random.default_rng(0)
    X = np.vstack([c + 0.003 * rng.normal(size=(PER_GROUP, 6)) for c in centres])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    group_scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.1],  # top-3 {0, 1, 2}
            [0.8, 0.9, 0.7, 0.1],  # top-3 {0, 1, 2}
            [0.1, 0.2, 0.9, 0.8],  # top-3 {1, 2, 3}
            [0.9, 0.1, 0.7, 0.8],  # top-3 {0, 2, 3}
        ]
    )
    group = np.repeat(np.arange(4), PER_GROUP)
    scores = group_scores[group]
    plurality = np.eye(4, dtype=bool)[group]  # model g is in the plurality on group g only
    agreement = np.full(len(X), 0.8)
    return X, scores, plurality, agreement, group


def niches_of(merge_threshold: float, prune_jaccard: float):
    X, scores, plurality, agreement, _ = hand_built_subject()
    config = NicheConfig(
        merge_threshold=merge_threshold,
        prune_jaccard=prune_jaccard,
        clustering=ClusteringConfig(max_k=1),
    )
    return discover_subject_niches("s", X, scores, plurality, agreement, config, np.random.default_rng(0))


def top3_sets(niches) -> set[frozenset[int]]:
    return {frozenset(np.argsort(-n.scores, kind="stable")[:3].tolist()) for n in niches}


def test_defaults_keep_three_niches_with_distinct_top3_sets():
    niches = niches_of(0.15, 0.95)
    assert len(niches) == 3
    assert top3_sets(niches) == {frozenset({0, 1, 2}), frozenset({1, 2, 3}), frozenset({0, 2, 3})}
    # G0 and G1 were folded into one niche of their 24 questions; G2 and G3 kept 12 each
    assert sorted(n.size for n in niches) == [PER_GROUP, PER_GROUP, 2 * PER_GROUP]


def test_merge_threshold_merges_centroids_closer_than_it():
    # 0.6 > 0.5 and 0.3: both pairs merge before pruning
    niches = niches_of(0.6, 0.95)
    assert len(niches) == 2
    assert top3_sets(niches) == {frozenset({0, 1, 2}), frozenset({0, 2, 3})}
    # 0.4 lies between the two pair distances: G0+G1 merge, G2 and G3 stay apart
    assert len(niches_of(0.4, 0.95)) == 3
    # merging at the prune threshold's value (0.95) is not the default
    assert len(niches_of(0.95, 0.95)) == 2


def test_prune_jaccard_folds_niches_whose_top3_sets_are_that_similar():
    # nothing merges; at 1.0 only identical top-3 sets fold (G0 + G1)
    assert len(niches_of(0.15, 1.0)) == 3
    # at 0.5 every pair of the 3 remaining sets (Jaccard 0.5 each) folds: one niche
    assert len(niches_of(0.15, 0.5)) == 1
    # a threshold no pair reaches (Jaccard is at most 1): no folding, every group its own niche
    assert len(niches_of(0.15, 1.01)) == 4


def test_niche_centres_follow_their_groups():
    X, _, _, _, group = hand_built_subject()
    niches = niches_of(0.15, 0.95)
    for g in (2, 3):  # the groups that stay alone: centre = spherical mean of the group
        mean = X[group == g].mean(axis=0)
        assert any(np.allclose(n.centroid, mean / np.linalg.norm(mean), atol=1e-5) for n in niches)


# ---------------------------------------------------------------------- the niche step end to end
@pytest.fixture(scope="module")
def synthetic_split():
    from cascal.data import NO_ANSWER
    from cascal.evaluation.protocol import make_split

    data = within_subject_niches(seed=0)
    split = make_split(data, data.model_names, 0)
    blank = split.train.with_gold(np.full(split.train.n_questions, NO_ANSWER, dtype=np.int8))
    return blank, split.test


def _top1(router: CascalRouter, train, test) -> float:
    router.fit(train.embeddings, train)
    first = router.route(test.embeddings, top_k=1).ranked[:, 0]
    return float((test.answers[np.arange(test.n_questions), first] == test.gold).mean())


def test_niches_inside_a_subject_are_found_and_used(synthetic_split):
    """In every synthetic subject one specialist is strong on half its topics and another on the
    other half, while every generalist beats both on the subject as a whole: per-subject routing
    gets about the generalists' 65 %, niche routing about the specialists' 85 % (measured 86.1 vs
    66.9 on this split; docs/ablations.md)."""
    train, test = synthetic_split
    full = CascalRouter(random_state=0)
    subject_only = CascalRouter(random_state=0, max_niches=1, merge_threshold=2.0)
    global_only = CascalRouter(random_state=0, fallback_distance=0.0, fallback_width=1e-9)
    full_top1 = _top1(full, train, test)
    assert full_top1 >= 0.80
    assert full_top1 >= _top1(subject_only, train, test) + 0.10
    assert full_top1 >= _top1(global_only, train, test) + 0.10
    # more than one niche per subject, and the subject-only variant has exactly one
    assert all(len(n) >= 2 for n in full.niches_.values())
    assert all(len(n) == 1 for n in subject_only.niches_.values())
    # the global-only variant ranks every query the same way
    ranked = global_only.route(test.embeddings, top_k=3).ranked
    assert (ranked == ranked[0]).all()


def test_each_topic_half_goes_to_its_specialist(synthetic_split):
    train, test = synthetic_split
    router = CascalRouter(random_state=0).fit(train.embeddings, train)
    first = router.route(test.embeddings, top_k=1).ranked[:, 0]
    ids = np.asarray(test.question_ids).astype(str)
    for s in range(4):
        for half, topics in enumerate(((0, 1), (2, 3))):
            rows = np.array([any(q.startswith(f"s{s}-t{t}-") for t in topics) for q in ids])
            specialist = (2 * s + half) % test.n_models
            assert np.mean(first[rows] == specialist) >= 0.9, (s, half)
