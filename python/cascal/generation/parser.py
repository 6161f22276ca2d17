"""Parse a generator's reply into multiple-choice questions.

The generation prompt (:mod:`cascal.generation.prompt`) asks for one block per question in this
tagged format::

    <question>
    Stem text; may span lines and contain LaTeX (\\frac{a}{b}), brackets [1, 2] or "(A)".
    </question>
    <option>first option</option>
    <option>second option</option>
    ...                                  (2 to 20 options, in order A, B, C, ...)
    <answer>C</answer>

Parsing rules, chosen to survive what real generators write:

* Only the three tag names ``question``, ``option`` and ``answer`` are recognised (case-insensitive,
  attributes ignored); any other text, such as
  introductory chatter, markdown fences or wrapper tags like ``<item>``, lies outside the fields and is
  ignored. Text inside a field is kept verbatim except for trimming, so ``x < y``, ``\\frac{a}{b}``,
  brackets and code fences inside a stem survive.
* A field ends at its closing tag or, if the generator forgot it, at the next opening tag of a
  known field (or at the end of the reply). A tag is ``<name>`` or ``<name attr...>`` with no space
  after ``<``, so ``a < answer`` in a stem is text.
* Each ``<question>`` starts a new question; the options and answer that follow belong to it.
* Line endings are normalised (CRLF and CR become LF); blank lines at the edges of a field are dropped.
* If every option of a question starts with its own letter label in order (``A) ``, ``(B) ``,
  ``C. ``, ``D: ``), the labels are removed; otherwise options are kept as written.
* The answer is a single letter, optionally decorated: ``C``, ``(C)``, ``[C]``, ``C)``, ``C. text``,
  ``Answer: C``, ``The answer is (C)``; a multi-line field is also tried on its first line. If it is
  not a letter, an answer that equals one option's
  text exactly is accepted too.

A question is skipped, and counted in :class:`ParseReport` under one reason, when it has an empty
stem, fewer than 2 or more than 20 options, an empty option, two identical options, no answer, an
answer that is not a letter nor an option's text, conflicting answers, or an answer letter beyond its
options. Option and answer fields that appear before any ``<question>`` are counted as stray.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from cascal.data import LETTERS, MAX_OPTIONS
from cascal.errors import ArgumentTypeError

MIN_OPTIONS = 2

#: Reasons a parsed block is skipped, in the order they are checked.
SKIP_REASONS = (
    "empty_question",
    "too_few_options",
    "too_many_options",
    "empty_option",
    "duplicate_options",
    "missing_answer",
    "conflicting_answers",
    "invalid_answer",
    "answer_out_of_range",
)

_FIELDS = ("question", "option", "answer")
# The patterns below never let two quantifiers compete for the same run of whitespace, so a long
# run without a match costs linear time, not polynomial backtracking.
_TAG = re.compile(r"<(/?)(question|option|answer)(?:\s+(?:[^<>\s][^<>\n]*)?)?>", re.IGNORECASE)
_OPTION_LABEL = re.compile(r"^\s*(?:\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])\s*[).:])\s*")
_ANSWER_PATTERNS = (
    # the whole field is one letter, possibly decorated: C  (C)  [C]  C)  C.  **C**
    re.compile(r"^[\s*_`\"']*(?:[(\[]\s*)?([A-Za-z])(?:\s*[)\].:])?[\s*_`\"']*$"),
    # "Answer: C", "The answer is (C)", "correct option: [C] ..."
    re.compile(r"\b(?i:answer|option|choice)\b(?:\s+(?i:is))?\s*(?:[:=\-]\s*)?(?:[(\[]\s*)?([A-Z])\b(?![A-Za-z'])"),
    # a leading label followed by text: "C) Paris", "(C) Paris", "C. Paris"
    re.compile(r"^\s*(?:\(\s*([A-Z])\s*\)|\[\s*([A-Z])\s*\]|([A-Z])\s*[).:])\s*\S"),
)


@dataclass(frozen=True)
class ParsedQuestion:
    """One valid multiple-choice question.

    Attributes:
        question: the stem.
        options: 2..20 option texts, in order (option ``i`` has letter ``LETTERS[i]``).
        answer: index of the generator's key in ``options``.
    """

    question: str
    options: tuple[str, ...]
    answer: int

    @property
    def answer_letter(self) -> str:
        """The key as a letter (0 -> ``"A"``)."""
        return LETTERS[self.answer]


@dataclass
class ParseReport:
    """What a parse (or several, via :meth:`merge`) saw.

    Attributes:
        blocks: question blocks found (valid + skipped).
        valid: questions returned.
        skipped: reason -> count of blocks skipped (reasons from :data:`SKIP_REASONS`).
        stray_fields: option/answer fields found before any ``<question>`` (ignored).
        replies: number of replies parsed.
        empty_replies: replies in which no question block was found at all.
    """

    blocks: int = 0
    valid: int = 0
    skipped: Counter = field(default_factory=Counter)
    stray_fields: int = 0
    replies: int = 0
    empty_replies: int = 0

    @property
    def n_skipped(self) -> int:
        """Total blocks skipped, whatever the reason."""
        return int(sum(self.skipped.values()))

    def merge(self, other: "ParseReport") -> None:
        """Add ``other``'s counts to this report in place."""
        self.blocks += other.blocks
        self.valid += other.valid
        self.skipped.update(other.skipped)
        self.stray_fields += other.stray_fields
        self.replies += other.replies
        self.empty_replies += other.empty_replies

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {
            "replies": self.replies,
            "empty_replies": self.empty_replies,
            "blocks": self.blocks,
            "valid": self.valid,
            "skipped": dict(sorted(self.skipped.items())),
            "stray_fields": self.stray_fields,
        }


@dataclass
class _RawBlock:
    question: str
    options: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


def _clean_field(text: str) -> str:
    """Trim a field: drop blank edge lines and trailing spaces on each line, keep inner layout."""
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip()


def _split_fields(text: str) -> list[tuple[str, str]]:
    """The reply as a sequence of ``(field name, content)`` in order of appearance."""
    fields: list[tuple[str, str]] = []
    tags = [(m.start(), m.end(), bool(m.group(1)), m.group(2).lower()) for m in _TAG.finditer(text)]
    for i, (_, content_start, closing, name) in enumerate(tags):
        if closing:
            continue
        end = len(text)
        # scan forward by index (no list copies): each tag is passed over by at most one field
        for j in range(i + 1, len(tags)):
            later_start, _, later_closing, later_name = tags[j]
            if not later_closing or later_name == name:
                end = later_start
                break
        fields.append((name, _clean_field(text[content_start:end])))
    return fields


def _strip_option_labels(options: list[str]) -> list[str]:
    """Remove ``A) ``-style labels when every option carries its own letter in order."""
    stripped = []
    for i, option in enumerate(options):
        match = _OPTION_LABEL.match(option)
        if not match:
            return options
        letter = next(g for g in match.groups() if g)
        if letter.upper() != LETTERS[i]:
            return options
        stripped.append(option[match.end() :].strip())
    if any(not s for s in stripped):
        return options
    return stripped


def _answer_letter(text: str) -> Optional[str]:
    """The option letter an answer field names, or ``None`` if it names none. A multi-line field
    (e.g. an unclosed ``<answer>`` running into trailing chatter) is judged on its first line."""
    first_line = text.split("\n", 1)[0]
    for candidate in dict.fromkeys((text, first_line)):
        for pattern in _ANSWER_PATTERNS:
            match = pattern.search(candidate)
            if match:
                return next(g for g in match.groups() if g).upper()
    return None


def _resolve_answer(answers: list[str], options: list[str]) -> tuple[Optional[int], Optional[str]]:
    """``(index, None)`` for a usable answer, else ``(None, skip reason)``."""
    if not answers or all(not a for a in answers):
        return None, "missing_answer"
    indices = set()
    for raw in answers:
        if not raw:
            continue
        letter = _answer_letter(raw)
        if letter is not None:
            indices.add(ord(letter) - ord("A"))
        elif raw in options:
            indices.add(options.index(raw))
        else:
            return None, "invalid_answer"
    if len(indices) > 1:
        return None, "conflicting_answers"
    index = indices.pop()
    if index >= len(options):
        return None, "answer_out_of_range"
    return index, None


def _validate(block: _RawBlock) -> tuple[Optional[ParsedQuestion], Optional[str]]:
    if not block.question:
        return None, "empty_question"
    if len(block.options) < MIN_OPTIONS:
        return None, "too_few_options"
    if len(block.options) > MAX_OPTIONS:
        return None, "too_many_options"
    options = _strip_option_labels(block.options)
    if any(not option for option in options):
        return None, "empty_option"
    if len(set(options)) != len(options):
        return None, "duplicate_options"
    answer, reason = _resolve_answer(block.answers, options)
    if answer is None:
        return None, reason
    return ParsedQuestion(block.question, tuple(options), answer), None


def parse_questions(text: str) -> tuple[list[ParsedQuestion], ParseReport]:
    """Parse one generator reply in the tagged format of this module's docstring.

    Args:
        text: the raw reply.

    Returns:
        The valid questions in order of appearance, and a :class:`ParseReport` counting every block
        found and every skip by reason. Never raises on malformed content.

    Raises:
        ArgumentTypeError: (a ``TypeError``) ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise ArgumentTypeError(f"text: expected the generator's reply as str, got {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    report = ParseReport(replies=1)
    blocks: list[_RawBlock] = []
    for name, content in _split_fields(text):
        if name == "question":
            blocks.append(_RawBlock(content))
        elif not blocks:
            report.stray_fields += 1
        elif name == "option":
            blocks[-1].options.append(content)
        else:
            blocks[-1].answers.append(content)

    questions: list[ParsedQuestion] = []
    for block in blocks:
        parsed, reason = _validate(block)
        if parsed is None:
            report.skipped[reason] += 1
        else:
            questions.append(parsed)
    report.blocks = len(blocks)
    report.valid = len(questions)
    report.empty_replies = int(not blocks)
    return questions, report
