"""Simulated question writing: stems and options built from a niche's topical words.

Every question carries a case number (``Case 4821337: ...``). The hidden right answer is a keyed hash
of that number (:meth:`SimWorld.truth`), so any simulated model that reads the question can compute
it, whatever prompt template the answering code wraps around the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from cascal.data import LETTERS
from cascal.errors import InvalidParameterError
from cascal.simulate.catalogue import SUBJECTS, Subject
from cascal.simulate.hashing import stable_int, stable_rng
from cascal.simulate.world import SimWorld

CASE_PATTERN = re.compile(r"\bCase (\d{7})\b")

# One frame with several topical slots: the frame's words are shared by every question, so the
# similarity between two questions is driven by the topical words they share (niche, then subject).
_STEMS = (
    "In {g} and {h}, how do {a}, {b} and {c} bear on {d}, {e} and {f}?",
    "In {g} and {h}, how do {a} and {b} bear on {c}, {d}, {e} and {f}?",
)
_OPTIONS = (
    "{x} increases {y}",
    "{x} decreases {y}",
    "{x} has no effect on {y}",
    "{x} is required for {y}",
    "{x} replaces {y}",
    "{x} precedes {y}",
    "{x} depends on {y}",
    "{x} is independent of {y}",
    "{x} is a special case of {y}",
    "{x} and {y} cancel out",
    "{x} limits {y}",
    "{x} amplifies {y}",
)


@dataclass(frozen=True)
class SimQuestion:
    """A simulated question and what the world knows about it."""

    case: str
    subject: str
    niche: str
    niche_key: tuple[int, int]
    stem: str
    options: tuple[str, ...]
    truth: int


def write_question(world: SimWorld, subject: Subject, n_options: int, *parts: object) -> SimQuestion:
    """One question on ``subject`` with ``n_options`` options, determined by ``parts`` and the world seed."""
    if not 2 <= n_options <= 20:
        raise InvalidParameterError(f"n_options: a question needs 2..20 options, got {n_options}")
    rng = stable_rng("question", world.seed, *parts)
    niche_index = int(rng.integers(len(subject.niches)))
    niche = subject.niches[niche_index]
    case = f"{stable_int('case', world.seed, *parts) % 9_000_000 + 1_000_000}"
    a, b, c, d, e, f = rng.choice(niche.words, size=6, replace=False)
    g, h = rng.choice(subject.general_words, size=2, replace=False)
    stem = f"Case {case}: " + _STEMS[int(rng.integers(len(_STEMS)))].format(a=a, b=b, c=c, d=d, e=e, f=f, g=g, h=h)
    options: list[str] = []
    templates = rng.permutation(len(_OPTIONS))
    while len(options) < n_options:
        x, y = rng.choice(niche.words, size=2, replace=False)
        text = _OPTIONS[int(templates[len(options) % len(_OPTIONS)])].format(x=x, y=y)
        if text not in options:
            options.append(text)
    subject_index = SUBJECTS.index(subject)
    return SimQuestion(
        case=case,
        subject=subject.key,
        niche=niche.name,
        niche_key=(subject_index, niche_index),
        stem=stem,
        options=tuple(options),
        truth=world.truth(case, n_options),
    )


def format_blocks(questions: Sequence[SimQuestion], keys: Sequence[int]) -> str:
    """The questions in the tagged block format of :mod:`cascal.generation.parser`, with ``keys``."""
    blocks = []
    for q, key in zip(questions, keys):
        lines = ["<question>", q.stem, "</question>"]
        lines += [f"<option>{o}</option>" for o in q.options]
        lines.append(f"<answer>{LETTERS[key]}</answer>")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


# ---------------------------------------------------------------------------- reading prompts
_N_QUESTIONS = re.compile(
    r"\b(\d{1,4})\s+(?:new\s+|more\s+|distinct\s+|different\s+)?(?:multiple[- ]choice\s+)?questions?\b", re.I
)
_N_OPTIONS = re.compile(r"\b(\d{1,2})\s+(?:answer\s+)?options\b", re.I)
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-T])\)|\[([A-T])\]|([A-T])[.):])\s+\S", re.M)


def requested_counts(prompt: str, default_questions: int = 5, default_options: int = 4) -> tuple[int, int]:
    """``(questions, options per question)`` a generation prompt asks for (defaults when unstated;
    questions capped at 200, options clamped to 2..20)."""
    m = _N_QUESTIONS.search(prompt)
    n_questions = int(m.group(1)) if m else default_questions
    m = _N_OPTIONS.search(prompt)
    n_options = int(m.group(1)) if m else default_options
    return max(1, min(n_questions, 200)), max(2, min(n_options, 20))


def subject_text(prompt: str) -> str:
    """The part of a generation prompt that describes the subject: its ``Subject:`` and
    ``Description:`` lines when present, else the whole prompt."""
    lines = [ln for ln in prompt.splitlines() if ln.strip().lower().startswith(("subject:", "description:"))]
    return "\n".join(lines) if lines else prompt


def find_case(text: str) -> Optional[str]:
    """The case number of the (last) simulated question quoted in ``text``, if any."""
    found = CASE_PATTERN.findall(text)
    return found[-1] if found else None


def count_options(text: str) -> Optional[int]:
    """Number of lettered options (``A.``, ``(B)``, ``C)``, ``[D]`` at a line start) listed in order
    from A in ``text``; ``None`` when there are fewer than 2."""
    letters = [next(g for g in m.groups() if g) for m in _OPTION_LINE.finditer(text)]
    # the longest run A, B, C, ... (the answer instructions may mention letters again later)
    best = run = 0
    expected = 0
    for letter in letters:
        index = LETTERS.index(letter)
        if index == 0:
            expected, run = 1, 1
        elif index == expected:
            expected += 1
            run += 1
        else:
            continue
        best = max(best, run)
    return best if best >= 2 else None
