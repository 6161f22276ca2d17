"""``cascal coverage`` on decision logs written here: damaged lines, a log of another router, the
embedding sidecar, and the bounded-memory path on a large log."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from synthetic_router import fit_synthetic_router

from cascal.cli import main
from cascal.coverage import CoverageSettings, analyse_coverage, file_sha256
from cascal.errors import DataError, DecisionLogWarning
from cascal.io.decision_embeddings import EmbeddingSidecar, default_sidecar, read_sidecar


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    router, centres = fit_synthetic_router(n=600, n_subjects=3, dim=16)
    path = tmp_path_factory.mktemp("coverage_router") / "router.cascal"
    router.save(path)
    return path, router, centres


def write_log(path: Path, router, n: int, *, uncovered_every: int = 10, sha: str = "", seed: int = 0) -> list[str]:
    """A decision log of ``n`` routed lines, every ``uncovered_every``-th far from every subject
    (fallback weight 0.9, its embedding near one planted direction in the sidecar); the others
    covered. Returns the ids of the uncovered lines."""
    rng = np.random.default_rng(seed)
    planted = rng.standard_normal(router.tables_.dim).astype(np.float32)
    sidecar = EmbeddingSidecar(default_sidecar(path), part_rows=500)
    uncovered = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            far = i % uncovered_every == 0
            line = {
                "id": f"d{i}",
                "endpoint": "route",
                "text": f"planted question {i}" if far else f"covered question {i}",
                "ranking": list(router.model_names_),
                "subject": router.subject_names_[i % len(router.subject_names_)],
                "subject_weight": 1.0,
                "niche": 0,
                "nearest_distance": 0.9 if far else 0.1,
                "fallback_weight": 0.9 if far else 0.0,
                **({"router_sha256": sha} if sha else {}),
            }
            f.write(json.dumps(line) + "\n")
            if far:
                uncovered.append(line["id"])
                sidecar.add(line["id"], planted + 0.05 * rng.standard_normal(planted.shape[0]).astype(np.float32))
    sidecar.close()
    return uncovered


def analyse(log: Path, router_path: Path, **settings) -> object:
    return analyse_coverage(log, router_path, settings=CoverageSettings(**{"min_size": 5, **settings}))


def test_a_clean_log_with_its_routers_hash_is_read_whole_without_warning(fitted, tmp_path):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    planted = write_log(log, router, 200, sha=file_sha256(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DecisionLogWarning)
        report = analyse(log, path)
    assert (report.lines, report.routed, report.uncovered, report.unverified) == (200, 200, 20, 0)
    assert report.damage is None
    (cluster,) = report.clusters
    assert set(cluster.ids) == set(planted) and cluster.size == 20
    assert cluster.examples[0].startswith("planted question")
    assert sum(s["count"] for s in report.subjects) == 200


@pytest.mark.parametrize(
    "damage, reason",
    [
        (b'{"id": "x", "endpoint": "route", "ranking": ["a"], "subj', "cut short"),  # a crash mid-write
        (b"\xff\xfe garbage\n", "not UTF-8"),
        (b"[1, 2, 3]\n", "expected a JSON object"),
        (
            b'{"endpoint": "route", "ranking": [], "subject": "s", "subject_weight": 1, "niche": 0, '
            b'"nearest_distance": "far", "fallback_weight": 0}\n',
            "nearest_distance",
        ),
    ],
)
def test_a_damaged_line_ends_the_reading_and_the_warning_says_where(fitted, tmp_path, damage, reason):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    write_log(log, router, 100, sha=file_sha256(path))
    good = log.read_bytes().splitlines(keepends=True)
    after = good[:7] if damage.endswith(b"\n") else []  # a line cut short can only be the last
    log.write_bytes(b"".join(good[:60]) + damage + b"".join(after))
    with pytest.warns(DecisionLogWarning, match=rf"decisions\.jsonl:61: damaged line \(.*{reason}") as caught:
        report = analyse(log, path)
    assert f"left {len(after)} after it unread" in str(caught[0].message)
    assert report.lines == 60 and report.damage == {**report.damage, "line": 61, "lines_after": len(after)}
    assert report.uncovered == 6  # lines 0, 10, ..., 50: only what precedes the damage


def test_damage_on_the_first_line_leaves_nothing_and_is_an_error_naming_the_line(fitted, tmp_path):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    log.write_text("not json at all\n" + json.dumps({"endpoint": "route", "ranking": []}) + "\n")
    with pytest.raises(DataError, match=r"decisions\.jsonl:1: not a decision line \(not JSON"):
        analyse(log, path)
    log.write_text("")
    with pytest.raises(DataError, match="no decision line"):
        analyse(log, path)


def test_a_log_of_another_router_is_refused_at_its_first_foreign_line(fitted, tmp_path, capsys):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    write_log(log, router, 30, sha=file_sha256(path))
    lines = log.read_text().splitlines(keepends=True)
    other = json.loads(lines[12])
    other["router_sha256"] = "0" * 64
    log.write_text("".join(lines[:12]) + json.dumps(other) + "\n" + "".join(lines[13:]))
    with pytest.raises(DataError, match=r"decisions\.jsonl:13: router_sha256 0000000000000000\.\.\. is not"):
        analyse(log, path)
    assert main(["coverage", str(log), "--router", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "decisions.jsonl:13" in err and "another router" in err


def test_lines_without_a_router_hash_are_accepted_with_a_warning(fitted, tmp_path):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    write_log(log, router, 40)
    with pytest.warns(DecisionLogWarning, match="40 of 40 lines do not record router_sha256"):
        report = analyse(log, path)
    assert report.unverified == 40 and report.lines == 40


def test_lines_without_routing_fields_count_as_not_routed(fitted, tmp_path):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    write_log(log, router, 20, sha=file_sha256(path))
    with open(log, "a", encoding="utf-8") as f:  # a pool model asked by name: no routing fields
        f.write(
            json.dumps({"id": "n1", "endpoint": "chat", "ranking": ["m"], "router_sha256": file_sha256(path)}) + "\n"
        )
    report = analyse(log, path)
    assert (report.lines, report.routed) == (21, 20)
    assert report.to_dict()["lines"]["not_routed"] == 1


def test_the_size_floor_drops_small_clusters(fitted, tmp_path):
    path, router, _ = fitted
    log = tmp_path / "decisions.jsonl"
    write_log(log, router, 200, sha=file_sha256(path))
    report = analyse(log, path, min_size=21)
    assert report.clusters == [] and report.clusters_below_floor == 1
    assert report.uncovered == 20


def test_a_large_log_is_sampled_in_bounded_memory(fitted, tmp_path):
    """Memory during the pass does not grow with the log: the uncovered queries are a fixed-size
    reservoir sample, and cluster sizes are estimated back to the whole log."""
    path, router, _ = fitted
    peaks = {}
    for n in (4_000, 16_000):
        log = tmp_path / f"decisions-{n}.jsonl"
        write_log(log, router, n, uncovered_every=4, sha=file_sha256(path))
        tracemalloc.start()
        report = analyse(log, path, max_points=100, min_size=50)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.sampled == 100 and report.uncovered == n // 4
        (cluster,) = report.clusters
        assert cluster.sampled == 100 and cluster.size == n // 4  # scaled back up
    assert peaks[16_000] < 1.3 * peaks[4_000], peaks


def test_the_sidecar_is_read_by_id_and_refuses_another_width(tmp_path):
    folder = tmp_path / "side"
    one, two = EmbeddingSidecar(folder, part_rows=3), EmbeddingSidecar(folder, part_rows=3)
    rows = np.arange(40, dtype=np.float32).reshape(10, 4)
    for i in range(10):
        (one if i % 2 else two).add(f"r{i}", rows[i])  # two writers, one folder
    one.close()
    two.close()
    two.add("late", rows[0])  # after close: dropped
    assert len(list(folder.glob("part-*.npz"))) == 4
    found = read_sidecar(folder, ["r1", "r8", "missing", "late"], dim=4)
    assert set(found) == {"r1", "r8"}
    np.testing.assert_array_equal(found["r8"], rows[8])
    with pytest.raises(DataError, match=r"part-.*\.npz: embeddings have 4 dimensions, the router's have 8"):
        read_sidecar(folder, ["r1"], dim=8)
    (folder / "part-zz-broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"part-zz-broken\.npz: not an embedding sidecar part"):
        read_sidecar(folder, ["nowhere"])
    with pytest.raises(DataError, match="no embedding sidecar"):
        read_sidecar(tmp_path / "absent", [])
