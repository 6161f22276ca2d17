"""Fuzzing the dataset loaders, the readers of untrusted files.

Contract under test: ``load_dataset`` on any bytes either loads (and then a save and a reload give
the same records, ids and answers) or raises ``DataError``. Every case is bounded in time:
hypothesis's ``deadline`` fails an example over 1 s, and the pathological inputs are timed explicitly.
"""

from __future__ import annotations

import csv
import io
import json
import string
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascal.data import LETTERS, MAX_OPTIONS, DataError
from cascal.io import load_dataset, save_dataset

FUZZ = settings(max_examples=120, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
BUDGET = 1.0  # seconds per pathological case


# ----------------------------------------------------------------------------- strategies
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
odd_ids = st.sampled_from(["007", "7", "-0", "0", " 1", "1 ", "a,b", 'q"1', "x\r\ny", "", "\u2028", "\ud800", "é"])
question_ids = st.integers(-5, 30) | st.text(max_size=6) | odd_ids | st.booleans() | st.floats(-2, 2) | st.none()
answers = (
    st.none() | st.just("") | st.sampled_from(LETTERS[:6]) | st.sampled_from(["a", "Z", "AB", " A"]) | st.integers(0, 3)
)
records = st.tuples(
    st.fixed_dictionaries(
        {
            "question_id": question_ids,
            "category": st.sampled_from(["law", "math", "law\x00"]) | json_values,
            "question": st.text(max_size=20) | json_values,
            "options": st.lists(st.text(max_size=6) | scalars, min_size=0, max_size=MAX_OPTIONS + 2)
            | st.lists(st.text(max_size=4), min_size=2, max_size=5),
        },
        optional={"answer": answers, "src": json_values},
    ),
    st.sampled_from([None] * 8 + ["question_id", "category", "question", "options"]),
).map(lambda pair: {k: v for k, v in pair[0].items() if k != pair[1]})  # now and then a core field is missing
cells = st.sampled_from([*LETTERS[:6], "?", "", " B ", "a", "Z", "U", "AB", "1"])


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with up to three random byte-level insertions, deletions or replacements."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(out)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(
            st.binary(min_size=1, max_size=4) | st.sampled_from([b",", b'"', b"\n", b"\r", b"{", b"]", b"\xef\xbb\xbf"])
        )
        if kind == "insert":
            out[pos:pos] = chunk
        elif kind == "delete":
            del out[pos : pos + len(chunk)]
        else:
            out[pos : pos + len(chunk)] = chunk
    return bytes(out)


@st.composite
def dataset_files(draw) -> tuple[bytes, bytes]:
    """(questions.jsonl, predictions.csv) bytes: mostly well-formed, with odd values and mutations."""
    recs = draw(st.lists(records, min_size=0, max_size=6))
    ascii_only = draw(st.booleans())
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in recs]
    if draw(st.booleans()):
        lines.insert(
            draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "   ", "{}", "[1]", '{"question_id": 1']))
        )
    questions = (sep.join(lines) + sep).encode("utf-8", "surrogatepass")
    models = draw(st.lists(st.text(alphabet=string.ascii_letters + ' ,"\r\n', max_size=4), max_size=3))
    ids = [str(r.get("question_id")) for r in recs]
    ids = draw(st.permutations(ids))
    if ids and draw(st.booleans()):
        ids = ids[1:] + ids[:1] * draw(st.integers(0, 2))  # a missing or duplicated row
    buf = io.StringIO()
    writer = csv.writer(
        buf,
        lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
    )
    writer.writerow(["question_id", *models])
    for qid in ids:
        writer.writerow([qid, *(draw(cells) for _ in models)])
    predictions = buf.getvalue().encode("utf-8", "surrogatepass")
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + draw(mutated(questions)), draw(mutated(predictions))


def load_or_refuse(folder: Path, out_of_range: str):
    """The loaded matrix, or None when ``load_dataset`` refused with a DataError (any other
    exception fails the test)."""
    try:
        return load_dataset(folder, embeddings=None, out_of_range=out_of_range)
    except DataError:
        return None


def assert_round_trip(rm, root: Path) -> None:
    """Saving a loaded matrix and loading it again gives the same records, ids and answers."""
    back = load_dataset(save_dataset(rm, root / "saved"), embeddings=None)
    assert json.dumps(back.extra["question_records"]) == json.dumps(rm.extra["question_records"])
    assert [(type(q), q) for q in back.question_ids.tolist()] == [(type(q), q) for q in rm.question_ids.tolist()]
    assert back.model_names == rm.model_names
    np.testing.assert_array_equal(back.answers, rm.answers)
    np.testing.assert_array_equal(back.gold, rm.gold)
    assert back.options == rm.options and back.questions == rm.questions


# ----------------------------------------------------------------------------- loaders
@FUZZ
@given(files=dataset_files(), out_of_range=st.sampled_from(["error", "unparsable"]))
def test_loading_fuzzed_folders_loads_or_raises_data_error(files, out_of_range):
    questions, predictions = files
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "d"
        folder.mkdir()
        (folder / "questions.jsonl").write_bytes(questions)
        (folder / "predictions.csv").write_bytes(predictions)
        rm = load_or_refuse(folder, out_of_range)
        if rm is not None:
            assert_round_trip(rm, Path(tmp))


@FUZZ
@given(questions=st.binary(max_size=300), predictions=st.binary(max_size=100))
def test_loading_arbitrary_bytes_loads_or_raises_data_error(questions, predictions):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "d"
        folder.mkdir()
        (folder / "questions.jsonl").write_bytes(questions)
        (folder / "predictions.csv").write_bytes(predictions)
        rm = load_or_refuse(folder, "error")
        if rm is not None:
            assert_round_trip(rm, Path(tmp))


def test_fuzz_strategy_reaches_both_outcomes():
    """The structured strategy is not all refusals: some folders load (and round-trip) and some are refused."""
    outcomes = set()

    @settings(max_examples=80, deadline=None, database=None, derandomize=True)
    @given(files=dataset_files())
    def probe(files):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "questions.jsonl").write_bytes(files[0])
            (folder / "predictions.csv").write_bytes(files[1])
            outcomes.add(load_or_refuse(folder, "unparsable") is not None)

    probe()
    assert outcomes == {True, False}


GOOD = {"question_id": 1, "category": "c", "question": "q", "options": ["a", "b"]}


def write_pathological(folder: Path, questions: bytes, predictions: bytes = b"question_id,m\n1,A\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.jsonl").write_bytes(questions)
    (folder / "predictions.csv").write_bytes(predictions)
    return folder


GOOD_LINE = json.dumps(GOOD).encode() + b"\n"
PATHOLOGICAL = {
    "1 MB of [[[": (GOOD_LINE + b"[" * 1_000_000 + b"\n", None, "JSON nested more than 100 levels deep"),
    '1 MB of {"a":': (GOOD_LINE + b'{"a":' * 200_000 + b"\n", None, "JSON nested more than 100 levels deep"),
    "100k blank lines": (b"\n" * 100_000 + GOOD_LINE, None, None),
    "100k CR line breaks, then junk": (
        GOOD_LINE + b"\r" * 100_000 + b"junk\n",
        None,
        "questions.jsonl:100002: invalid JSON",
    ),
    "100k-character option": (json.dumps({**GOOD, "options": ["x" * 100_000, "y"]}).encode() + b"\n", None, None),
    "100k-character id": (
        json.dumps({**GOOD, "question_id": "i" * 100_000}).encode() + b"\n",
        b"question_id\n" + b"i" * 100_000 + b"\n",
        None,
    ),
    "100k options": (
        json.dumps({**GOOD, "options": ["o"] * 100_000}).encode() + b"\n",
        None,
        "must be a list of 2..20",
    ),
    "100k-digit integer id": (b'{"question_id": ' + b"9" * 100_000 + b"}\n", None, "invalid JSON"),
    "100k-column header": (
        GOOD_LINE,
        b"question_id," + b",".join(b"m%d" % i for i in range(100_000)) + b"\n1" + b",A" * 100_000 + b"\n",
        None,
    ),
    "100k duplicate model columns": (GOOD_LINE, b"question_id" + b",m" * 100_000 + b"\n", "duplicate model column"),
    "100k CSV lines of unknown ids": (
        GOOD_LINE,
        b"question_id,m\n1,A\n" + b"2,A\n" * 100_000,
        "question_id '2' is not in",
    ),
    "200 KB CSV cell": (GOOD_LINE, b"question_id,m\n1," + b"A" * 200_000 + b"\n", "field larger than field limit"),
    "200 KB quoted CSV cell": (
        GOOD_LINE,
        b'question_id,m\n1,"' + b"A" * 200_000 + b"\n",
        "field larger than field limit",
    ),
    "unterminated quote over 100k lines": (GOOD_LINE, b'question_id,m\n1,"' + b"A\n" * 100_000, None),
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_files_are_fast(name, tmp_path):
    questions, predictions, message = PATHOLOGICAL[name]
    folder = write_pathological(tmp_path / "d", questions, *([predictions] if predictions is not None else []))
    start = time.perf_counter()
    try:
        rm = load_dataset(folder)
        error = None
    except DataError as exc:
        rm, error = None, str(exc)
    elapsed = time.perf_counter() - start
    assert elapsed < BUDGET, f"{name}: {elapsed:.2f} s"
    if message is None:
        assert rm is not None or error is not None
    else:
        assert error is not None and message in error, error
