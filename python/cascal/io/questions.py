"""``questions.jsonl``: the questions of a dataset folder, one JSON object per line.

Each line holds ``question_id`` (an integer or a string), ``category``, ``question``, ``options``
(2..20 strings) and ``answer`` (the gold or generator key letter; ``null`` or absent if unknown).
Other fields are kept in ``ResponseMatrix.extra["question_fields"]``.

Question ids and every field keep the JSON values they were read with: ``7`` stays an integer,
``"007"`` a string, and each record is kept in ``extra["question_records"]``, so a folder loaded
and saved again gets the same records (a field the matrix changed is written from the matrix).
Every malformed line raises :class:`~cascal.errors.DataError` naming the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from cascal.data import LETTERS, MAX_OPTIONS, NO_ANSWER, DataError, ResponseMatrix
from cascal.io.text import has_surrogate, read_text, split_lines
from cascal.validation import short_repr

__all__ = [
    "CORE_FIELDS",
    "MAX_JSON_DEPTH",
    "QUESTIONS_FILE",
    "QUESTION_FIELDS",
    "QUESTION_RECORDS",
    "Question",
    "answer_index",
    "json_ids",
    "letter_index",
    "question_lines",
    "read_questions",
]

#: The questions file of a dataset folder.
QUESTIONS_FILE = "questions.jsonl"
#: The fields every line has (``answer`` may be absent); the others are the question's own fields.
CORE_FIELDS = ("question_id", "category", "question", "options", "answer")
#: ``ResponseMatrix.extra`` key of the fields of questions.jsonl beyond the core ones (one dict per question).
QUESTION_FIELDS = "question_fields"
#: ``ResponseMatrix.extra`` key of the records as read from questions.jsonl (one dict per question).
QUESTION_RECORDS = "question_records"
#: Deepest nesting of JSON arrays and objects accepted on a line of questions.jsonl.
MAX_JSON_DEPTH = 100


@dataclass
class Question:
    """One line of questions.jsonl: the record as read and the forms the matrix keeps."""

    record: dict
    key: str
    category: str
    question: str
    options: list[str]
    gold: int


def read_questions(qfile: Path) -> list[Question]:
    """The questions of the questions.jsonl file ``qfile`` in file order (blank lines skipped).

    Raises:
        cascal.errors.DataError: a line that is not a JSON object nested at most
            :data:`MAX_JSON_DEPTH` deep, a missing field, an id that is neither an integer nor a
            string or repeats an earlier one (as text), options that are not 2..20 entries, an
            answer that is not a letter among them, or text holding an unpaired surrogate; the
            message starts with the file and the line.
    """
    questions: list[Question] = []
    seen: dict[str, int] = {}
    lineno = 0

    def refuse(problem: str) -> DataError:
        return DataError(f"{qfile}:{lineno}: {problem}")

    for lineno, line in enumerate(split_lines(read_text(qfile)), start=1):
        if not line or line.isspace():
            continue
        rec = _json_object(line, refuse)
        for key in ("question_id", "category", "question", "options"):
            if key not in rec:
                raise refuse(f"missing field '{key}'")
        qid = rec["question_id"]
        if not isinstance(qid, (int, str)) or isinstance(qid, bool):
            raise refuse(f"question_id must be an integer or a string, got {short_repr(qid)}")
        key = str(qid)
        if key in seen:
            raise refuse(f"duplicate question_id {short_repr(qid)} (first on line {seen[key]})")
        seen[key] = lineno
        opts = rec["options"]
        if not isinstance(opts, list) or not 2 <= len(opts) <= MAX_OPTIONS:
            count = len(opts) if isinstance(opts, list) else type(opts).__name__
            raise refuse(f"field 'options' must be a list of 2..{MAX_OPTIONS} strings, got {count}")
        gold = answer_index(rec.get("answer"), len(opts))
        if gold is None:
            raise refuse(
                f"field 'answer' is {short_repr(rec.get('answer'))}, not a letter among the question's {len(opts)} options"
            )
        question = Question(rec, key, str(rec["category"]), str(rec["question"]), [str(o) for o in opts], gold)
        if "\\u" in line:  # only a \u escape can put an unpaired surrogate into decoded UTF-8 text
            for name, text in (
                ("question_id", key),
                ("category", question.category),
                ("question", question.question),
                *(("options", o) for o in question.options),
            ):
                if has_surrogate(text):
                    raise refuse(f"field '{name}' holds an unpaired surrogate, not text")
        questions.append(question)
    return questions


def _json_object(line: str, refuse: Callable[[str], DataError]) -> dict:
    """One line of questions.jsonl parsed: a JSON object nested at most :data:`MAX_JSON_DEPTH` deep;
    ``refuse(problem)`` makes the error to raise."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise refuse(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise refuse(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        raise refuse(f"invalid JSON ({str(exc).split(';')[0]})") from None
    if not isinstance(rec, dict):
        raise refuse(f"expected a JSON object, got {type(rec).__name__}")
    if line.count("[") + line.count("{") > MAX_JSON_DEPTH and _nesting_exceeds(rec, MAX_JSON_DEPTH):
        raise refuse(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return rec


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def answer_index(letter: Any, n_options: int) -> Optional[int]:
    """The option index of an ``answer`` value: -1 for missing, ``null`` or ``""``, ``None`` when
    it is not a letter among ``n_options`` options."""
    if letter is None or letter == "":
        return NO_ANSWER
    idx = letter_index(letter)
    return idx if idx is not None and idx < n_options else None


def letter_index(cell: Any) -> Optional[int]:
    """The option index of an answer letter (``"A"`` = 0, up to ``"T"``), ``None`` for anything else."""
    if isinstance(cell, str) and len(cell) == 1 and cell in LETTERS:
        return LETTERS.index(cell)
    return None


def json_ids(responses: ResponseMatrix) -> list[Union[int, str]]:
    """The question ids as JSON values, checked: integers or strings, unique as text, valid UTF-8."""
    ids: list[Union[int, str]] = []
    seen: dict[str, int] = {}
    for i, qid in enumerate(np.asarray(responses.question_ids).tolist()):
        if isinstance(qid, np.generic):  # numpy scalars inside an object array
            qid = qid.item()
        if isinstance(qid, bool) or not isinstance(qid, (int, str)):
            raise DataError(f"question_ids: entry {i} is {short_repr(qid)}; ids must be integers or strings")
        key = str(qid)
        if has_surrogate(key):
            raise DataError(f"question_ids: entry {i} holds an unpaired surrogate, not text")
        if key in seen:
            raise DataError(
                f"question_ids: entries {seen[key]} and {i} are both {short_repr(key)} (ids must differ as text)"
            )
        seen[key] = i
        ids.append(qid)
    return ids


def _per_question(responses: ResponseMatrix, key: str) -> Optional[list]:
    value = responses.extra.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != responses.n_questions:
        raise DataError(f"extra[{key!r}]: expected a list with one entry per question ({responses.n_questions})")
    return value


def question_lines(responses: ResponseMatrix, ids: list[Union[int, str]]) -> list[str]:
    """The lines of questions.jsonl for ``responses`` (``ids`` from :func:`json_ids`); a question
    loaded from a folder is written as it was read, except the fields the matrix changed.

    Raises:
        cascal.errors.DataError: option lists that disagree with ``n_options``; an
            ``extra["question_fields"]`` or ``extra["question_records"]`` without one entry per
            question; a record that cannot be written as JSON.
    """
    assert responses.questions is not None and responses.options is not None
    records = _per_question(responses, QUESTION_RECORDS)
    fields = _per_question(responses, QUESTION_FIELDS)
    lines = []
    for i in range(responses.n_questions):
        options = list(responses.options[i])
        if len(options) != responses.n_options[i]:
            raise DataError(
                f"options: question {i} has {len(options)} option texts, n_options says {responses.n_options[i]}"
            )
        gold = int(responses.gold[i]) if responses.gold is not None else NO_ANSWER
        core: dict[str, Any] = {
            "question_id": ids[i],
            "category": str(responses.subjects[i]),
            "question": responses.questions[i],
            "options": options,
            "answer": LETTERS[gold] if gold >= 0 else None,
        }
        rec = _merge_record(core, records[i] if records is not None else None, fields[i] if fields is not None else {})
        lines.append(_json_line(rec, i))
    return lines


def _merge_record(core: dict, read: Optional[dict], fields: dict) -> dict:
    """The record to write: ``core`` (the matrix's values) and the other ``fields``; where ``read``
    (the record as loaded) still says the same, its values and key order are kept."""
    if read is None:
        return {**core, **{k: v for k, v in fields.items() if k not in core}}
    if "category" in read and str(read["category"]).rstrip("\x00") == core["category"]:  # numpy str drops trailing NULs
        core["category"] = read["category"]
    if "question" in read and str(read["question"]) == core["question"]:
        core["question"] = read["question"]
    read_options = read.get("options")
    if isinstance(read_options, list) and [str(o) for o in read_options] == [str(o) for o in core["options"]]:
        core["options"] = read_options
    gold = NO_ANSWER if core["answer"] is None else LETTERS.index(core["answer"])
    if answer_index(read.get("answer"), len(core["options"])) == gold:
        if "answer" in read:
            core["answer"] = read["answer"]
        else:
            del core["answer"]
    order = [k for k in read if k in core or k in fields]
    order += [k for k in (*core, *fields) if k not in read]
    return {k: core[k] if k in core else fields[k] for k in dict.fromkeys(order)}


def _json_line(rec: dict, i: int) -> str:
    try:
        text = json.dumps(rec, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DataError(f"question {i}: cannot be written as JSON ({str(exc)[:200]})") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # an unpaired surrogate in an extra field: keep it as a \u escape
            text = json.dumps(rec)
    return text + "\n"
