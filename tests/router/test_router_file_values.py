"""Router files are checked value by value on loading, and no damage escapes as a foreign exception.

A router file whose arrays hold NaN or infinite values where the format says finite used to load,
and every later route failed; a damaged ``.npy`` header used to escape as ``tokenize.TokenError``.
"""

from __future__ import annotations

import io
import random
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_router import make_world

from cascal.kernels import RoutingTables
from cascal.router import CascalRouter
from cascal.router.persistence import MANIFEST, RouterFileError, RouterRecord, load_record, save_record


@pytest.fixture(scope="module")
def priced_file(tmp_path_factory) -> Path:
    """A valid router file with every optional array (the cost tables) present."""
    X, responses, _, _ = make_world(seed=3, noise=0.2)
    router = CascalRouter(clustering="kmeans", max_niches=4, random_state=5, embedding_model="hashing-16")
    record = router.fit(X, responses).to_record()
    t = record.tables
    n_centroids, n_models = t.centroid_scores.shape
    tables = RoutingTables(
        subject_reps=t.subject_reps,
        centroids=t.centroids,
        centroid_subject=t.centroid_subject,
        centroid_scores=t.centroid_scores,
        global_scores=t.global_scores,
        centroid_sizes=t.centroid_sizes,
        centroid_costs=np.linspace(0.1, 2.0, n_centroids * n_models).reshape(n_centroids, n_models),
        global_costs=np.linspace(0.5, 1.5, n_models),
    )
    fields = {f: getattr(record, f) for f in ("params", "constants", "model_names", "subject_names")}
    fields.update(embedding_model=record.embedding_model, stats_mu=record.stats_mu, stats_sigma=record.stats_sigma)
    path = tmp_path_factory.mktemp("priced") / "priced.cascal"
    save_record(RouterRecord(tables=tables, **fields), path)
    return path


def _entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info.filename) for info in zf.infolist()}


def _zip(dst: Path, entries: dict[str, bytes]) -> Path:
    """A well-formed zip of ``entries`` (valid CRCs), stored uncompressed."""
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return dst


def _npy(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=False)
    return buf.getvalue()


def _with_value(src: Path, dst: Path, array: str, value: float, index: int = 0) -> Path:
    entries = _entries(src)
    entry = f"arrays/{array}.npy"
    values = np.load(io.BytesIO(entries[entry]), allow_pickle=False).copy()
    values.reshape(-1)[index] = value
    entries[entry] = _npy(values)
    return _zip(dst, entries)


REFUSED = [
    ("subject_reps", np.nan),
    ("subject_reps", np.inf),
    ("centroids", np.nan),
    ("centroids", -np.inf),
    ("centroid_scores", np.inf),
    ("centroid_scores", -np.inf),
    ("global_scores", np.inf),
    ("centroid_costs", np.nan),
    ("centroid_costs", np.inf),
    ("global_costs", np.nan),
    ("global_costs", -np.inf),
    ("stats_mu", np.nan),
    ("stats_sigma", np.inf),
]


@pytest.mark.parametrize(("array", "value"), REFUSED, ids=[f"{a}-{v}" for a, v in REFUSED])
def test_non_finite_values_are_refused_naming_the_array(priced_file, tmp_path, array, value):
    path = _with_value(priced_file, tmp_path / "bad.cascal", array, value)
    with pytest.raises(RouterFileError, match=rf"^{tmp_path / 'bad.cascal'}: .*\b{array}\b"):
        CascalRouter.load(path)


def test_nan_scores_mean_no_data_and_still_load(priced_file, tmp_path):
    path = _with_value(priced_file, tmp_path / "nan.cascal", "centroid_scores", np.nan)
    path = _with_value(path, tmp_path / "nan2.cascal", "global_scores", np.nan)
    router = CascalRouter.load(path)
    router.route(np.asarray(router.tables_.subject_reps[:1], dtype=np.float64))


def test_all_nan_global_scores_are_refused(priced_file, tmp_path):
    entries = _entries(priced_file)
    n_models = np.load(io.BytesIO(entries["arrays/global_scores.npy"])).shape[0]
    entries["arrays/global_scores.npy"] = _npy(np.full(n_models, np.nan))
    with pytest.raises(RouterFileError, match="global_scores"):
        CascalRouter.load(_zip(tmp_path / "allnan.cascal", entries))


def test_zero_row_and_negative_size_are_refused(priced_file, tmp_path):
    entries = _entries(priced_file)
    reps = np.load(io.BytesIO(entries["arrays/subject_reps.npy"])).copy()
    reps[0] = 0
    with pytest.raises(RouterFileError, match="subject_reps"):
        CascalRouter.load(_zip(tmp_path / "zero.cascal", {**entries, "arrays/subject_reps.npy": _npy(reps)}))
    path = _with_value(priced_file, tmp_path / "size.cascal", "centroid_sizes", -3)
    with pytest.raises(RouterFileError, match="centroid_sizes"):
        CascalRouter.load(path)


def test_subject_without_a_centroid_is_refused(priced_file, tmp_path):
    entries = _entries(priced_file)
    subjects = np.load(io.BytesIO(entries["arrays/centroid_subject.npy"])).copy()
    subjects[:] = 0  # every centroid in subject 0: subject 1 has none, routing it would fail
    entries["arrays/centroid_subject.npy"] = _npy(subjects)
    with pytest.raises(RouterFileError, match="centroid_subject"):
        CascalRouter.load(_zip(tmp_path / "orphan.cascal", entries))


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (4, }",  # tokenize.TokenError in numpy
        b"{'descr': '<f8', 'fortran_order': False, 'shape': '''",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (4,), 'x': 1e999999}",
        b"\x00\xff" * 20,
    ],
)
def test_damaged_npy_header_is_a_router_file_error(priced_file, tmp_path, header):
    entries = _entries(priced_file)
    body = header.ljust(118) + b"\n"
    entries["arrays/stats_mu.npy"] = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body
    path = _zip(tmp_path / "header.cascal", entries)
    with pytest.raises(RouterFileError, match=rf"^{path}: .*stats_mu"):
        load_record(path)


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        pos = rnd.randrange(len(out))
        if rnd.random() < 0.5:
            out[pos] ^= 1 << rnd.randrange(8)
        else:
            out[pos] = rnd.randrange(256)
    return bytes(out)


def test_fuzz_mutated_entries_load_valid_or_raise_router_file_error(priced_file, tmp_path):
    """Mutate the entries *inside* a well-formed zip (CRCs recomputed, so the damage reaches the
    ``.npy`` headers, the array data and the manifest), and, one case in four, the raw file bytes.
    Each load must give a router whose tables are valid (it routes a probe), or RouterFileError."""
    rnd = random.Random(20261207)
    entries = _entries(priced_file)
    raw = priced_file.read_bytes()
    names = list(entries)
    outcomes = {"loaded": 0, "refused": 0}
    deadline = time.perf_counter() + 60
    n = 0
    for n in range(1, 601):
        path = tmp_path / f"m{n}.cascal"
        if n % 4 == 0:
            path.write_bytes(_mutate(raw, rnd))
        else:
            target = rnd.choice(names)
            if rnd.random() < 0.6 and target != MANIFEST:  # aim at the .npy header
                data = entries[target]
                head, tail = data[:128], data[128:]
                mutated = _mutate(head, rnd) + tail
            else:
                mutated = _mutate(entries[target], rnd)
            _zip(path, {**entries, target: mutated})
        try:
            router = CascalRouter.load(path)
        except RouterFileError as exc:
            assert str(exc).startswith(str(path)), exc
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"mutation {n}: {type(exc).__name__} instead of RouterFileError: {exc}")
        else:
            t = router.tables_
            assert np.isfinite(t.subject_reps).all() and np.isfinite(t.centroids).all()
            assert not np.isinf(t.centroid_scores).any() and not np.isinf(t.global_scores).any()
            if t.has_costs:
                assert np.isfinite(t.centroid_costs).all() and np.isfinite(t.global_costs).all()
            assert np.isfinite(router.stats_.mu).all() and np.isfinite(router.stats_.sigma).all()
            router.route(np.asarray(t.subject_reps[:1], dtype=np.float64))  # a probe routes
            outcomes["loaded"] += 1
        path.unlink()
        if time.perf_counter() > deadline:
            break
    print(f"{n} mutated router files: {outcomes}")
    assert n >= 300, f"only {n} mutations in the time bound"
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_cascal_route_reports_a_damaged_header_as_one_error_line(priced_file, tmp_path, capsys):
    from cascal.cli import main

    entries = _entries(priced_file)
    body = b"{'descr': '<f8', 'fortran_order': False, 'shape': (4, }".ljust(118) + b"\n"
    entries["arrays/stats_mu.npy"] = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body
    path = _zip(tmp_path / "header.cascal", entries)
    assert main(["route", str(path), "what is 2 + 2?"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and "stats_mu" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
