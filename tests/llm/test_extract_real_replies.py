"""The extractor on real replies: 7,234 replies of 17 models to MMLU-Pro questions, with the letter the
MMLU-Pro evaluation harness extracted and the gold letter (the data folder ``mmlu_pro_replies``; its
PROVENANCE.md says where they come from).

The harness's letter is a heuristic, not the truth, so the test asserts agreement with it where it
found a letter, per model and overall, with thresholds just under what the extractor reaches, and that
every remaining disagreement is one listed, with its reason, in docs/extraction.md (a new disagreement
fails here until it is read and documented; one that disappears must leave the list). Letters equal to
gold are checked only against the harness's own rate on the same replies: an extractor reads what the
reply says, right or wrong, and is never tuned to the gold letter.

The folder is ``$CASCAL_REPLIES`` (the folder or its replies.jsonl), else ``mmlu_pro_replies`` beside
``$CASCAL_DATA``. Outside CI the tests are skipped when it is absent; under CI (``CI=true``) that fails.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import pytest

from cascal.data import LETTERS, MAX_OPTIONS, NO_ANSWER
from cascal.llm import extract
from cascal.llm.extract import extract_answer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "extraction.md"

#: Agreement with the harness where it found a letter (reached: 99.06 % overall; the two lowest
#: models are Meta-Llama-3_1-8B-Instruct_5shots, 96.6 %, whose 8 disagreements are all unit or variable
#: letters the harness's last-letter fallback read in truncated replies, and gemini-1.5-pro-002_5shots,
#: 96.0 %, where 8 of 9 are replies listing the answers of the prompt's five examples before the answer
#: to the question asked, which the harness reads by the first; see docs/extraction.md).
MIN_AGREEMENT = 0.990
MIN_MODEL_AGREEMENT = 0.955
#: Time bounds, generous for a loaded CI machine (measured: about 1.5-2 s for the whole set and
#: under 10 ms for the slowest reply on a shared 2-core machine).
MAX_SECONDS = 6.0
MAX_REPLY_SECONDS = 0.05


def real_replies_file() -> Path:
    """``replies.jsonl`` of the real replies (``$CASCAL_REPLIES``, else beside ``$CASCAL_DATA``)."""
    if os.environ.get("CASCAL_REPLIES"):
        path = Path(os.environ["CASCAL_REPLIES"])
    elif os.environ.get("CASCAL_DATA"):
        path = Path(os.environ["CASCAL_DATA"]).parent / "mmlu_pro_replies"
    else:
        path = Path("mmlu_pro_replies")
    if path.is_dir():
        path = path / "replies.jsonl"
    if not path.is_file():
        message = f"real replies not found at {path} (set CASCAL_REPLIES or CASCAL_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def read(row: dict) -> Optional[str]:
    """The letter cascal reads (``None``: no answer). The one-option question of the data is read as a
    two-option one (extract_answer takes 2..20 options): any letter past A is beyond its options."""
    n_options = min(max(row["n_options"], 2), MAX_OPTIONS)
    index = extract_answer(row["reply"], n_options)
    return None if index == NO_ANSWER else LETTERS[index]


@pytest.fixture(scope="module")
def rows() -> "list[dict]":
    with real_replies_file().open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def readings(rows) -> "list[Optional[str]]":
    return [read(row) for row in rows]


def per_model(rows, readings) -> "dict[str, Counter]":
    stats: dict[str, Counter] = defaultdict(Counter)
    for row, letter in zip(rows, readings):
        c = stats[row["model"]]
        c["n"] += 1
        if row["harness_pred"] is not None:
            c["found"] += 1
            c["agree"] += letter == row["harness_pred"]
        c["cascal_gold"] += letter == row["gold"]
        c["harness_gold"] += row["harness_pred"] == row["gold"]
    return stats


def test_the_data_is_the_documented_set(rows):
    assert len(rows) == 7234
    assert len({row["model"] for row in rows}) == 17


def test_agreement_with_the_harness_per_model_and_overall(rows, readings):
    stats = per_model(rows, readings)
    low = {
        m: round(c["agree"] / c["found"], 4) for m, c in stats.items() if c["agree"] < MIN_MODEL_AGREEMENT * c["found"]
    }
    assert not low, f"models below {MIN_MODEL_AGREEMENT:.1%} agreement with the harness: {low}"
    agree = sum(c["agree"] for c in stats.values())
    found = sum(c["found"] for c in stats.values())
    assert agree >= MIN_AGREEMENT * found, f"agreement {agree}/{found} = {agree / found:.2%}"


def test_letters_equal_to_gold_at_least_the_harness_rate(rows, readings):
    stats = per_model(rows, readings)
    below = {m: (c["cascal_gold"], c["harness_gold"]) for m, c in stats.items() if c["cascal_gold"] < c["harness_gold"]}
    assert not below, f"models where fewer letters equal gold than the harness's: {below}"


def documented_disagreements() -> "set[tuple[str, int, str, str]]":
    """(model, question id, harness letter, cascal letter or '-') of the table in docs/extraction.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Remaining disagreements", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `?([\w.\-]+)`? \| (\d+) \| ([A-T]) \| ([A-T]|-) \|", section, re.MULTILINE)
    return {(model, int(qid), harness, mine) for model, qid, harness, mine in rows}


def test_every_disagreement_is_documented(rows, readings):
    found = {
        (row["model"], row["question_id"], row["harness_pred"], letter or "-")
        for row, letter in zip(rows, readings)
        if row["harness_pred"] is not None and letter != row["harness_pred"]
    }
    documented = documented_disagreements()
    assert found - documented == set(), "disagreements not in docs/extraction.md"
    assert documented - found == set(), "docs/extraction.md lists disagreements that are gone"


def test_the_whole_set_reads_fast(rows):
    start = time.perf_counter()
    times = []
    for row in rows:
        t = time.perf_counter()
        read(row)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    assert total < MAX_SECONDS, f"{len(rows)} replies in {total:.2f} s"
    # the slowest replies again, best of three (a loaded machine pauses any single call)
    slowest = sorted(range(len(rows)), key=times.__getitem__)[-5:]
    for i in slowest:
        best = min(_timed(rows[i]) for _ in range(3))
        assert best < MAX_REPLY_SECONDS, f"{rows[i]['model']} {rows[i]['question_id']}: {best * 1000:.1f} ms"


def _timed(row: dict) -> float:
    t = time.perf_counter()
    read(row)
    return time.perf_counter() - t


def test_the_fast_cue_search_finds_what_the_patterns_find(rows):
    # the cue patterns are tried only where their opening words occur: on every real reply (the
    # tail the extractor reads, normalised), the matches are those of the plain pattern search
    for row in rows:
        flat = extract.normalize(row["reply"][-extract.TAIL_CHARS :])
        for cue in (extract._STATEMENT, extract._LABEL, extract._VERDICT, extract._OPTION_CUE):
            assert [m.span() for m in cue.finditer(flat)] == [m.span() for m in cue.regex.finditer(flat)]
        praised = [m.span() for m in extract._praised_options(flat, False)]
        plain = [
            m.span() for m in extract._LETTER_FIRST[False].finditer(flat) if extract._VERDICT_AFTER.match(flat, m.end())
        ]
        assert praised == plain, row["question_id"]
        assert extract._cannot_tell(flat) == bool(extract._CANNOT_TELL.search(flat))
