"""Letter extraction from free-text replies: formats, fallbacks, precedence, out-of-range letters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.data import LETTERS, NO_ANSWER
from cascal.llm.extract import extract_answer, find_letter


@pytest.mark.parametrize(
    "text, expected",
    [
        # the canonical form and its small variations
        ("Let's think. The answer is (B).", "B"),
        ("the answer is (c)", "C"),
        ("The answer is D", "D"),
        ("The answer is: J", "J"),
        ("the answer is c.", "C"),
        ("The correct answer is option C because ...", "C"),
        ("So the answer would be (A)", "A"),
        ("The answer is [E]", "E"),
        ("The answer is ( F )", "F"),
        # LaTeX and markdown
        ("The answer is $\\boxed{\\text{(C)}}$", "C"),
        ("the answer is \\(\\boxed{B}\\)", "B"),
        ("Therefore the answer is $\\mathbf{(G)}$.", "G"),
        ("The answer is **(H)**", "H"),
        ("The answer is `D`", "D"),
        ("Final result: $\\boxed{D}$", "D"),
        ("\\[\\boxed{\\text{A}}\\]", "A"),
        # multiple mentions: the last "answer is" wins
        ("At first the answer is (E). Wait, re-checking: the answer is (F).", "F"),
        ("The answer is (A)\n...\nThe answer is (B)\n...\nthe answer is (C)", "C"),
        # "answer is" beats other forms, even if they come later
        ("The answer is (B).\nAnswer: C", "B"),
        # fallback: Answer: X
        ("Reasoning...\nAnswer: D", "D"),
        ("Final Answer: **B**", "B"),
        ("answer - (b)", "B"),
        # fallback: a lone final letter or (X)
        ("Some reasoning.\n\n(C)", "C"),
        ("Some reasoning.\nC.", "C"),
        ("Some reasoning.\n  E  ", "E"),
        # no answer
        ("I am not sure.", None),
        ("The answer is a bit unclear to me.", None),
        ("", None),
        ("A is wrong and B is wrong, so I think it depends.", None),
    ],
)
def test_find_letter_formats(text, expected):
    assert find_letter(text) == expected


@pytest.mark.parametrize(
    "text, n_options, expected",
    [
        ("The answer is (D)", 4, 3),
        ("The answer is (E)", 4, NO_ANSWER),  # beyond the 4 options -> unparsable
        ("The answer is (K)", 10, NO_ANSWER),
        ("The answer is (T)", 20, 19),
        ("Answer: C", 3, 2),
        ("Answer: D", 3, NO_ANSWER),
        ("nothing here", 10, NO_ANSWER),
        # an out-of-range committed answer is not rescued by an earlier fallback letter
        ("(B)\nThe answer is (Z)", 10, NO_ANSWER),
    ],
)
def test_extract_answer_respects_option_count(text, n_options, expected):
    assert extract_answer(text, n_options) == expected


@pytest.mark.parametrize("bad", [1, 21, 0, True, 4.0, "4"])
def test_extract_answer_rejects_bad_option_counts(bad):
    with pytest.raises(ValueError, match="n_options"):
        extract_answer("The answer is (A)", bad)


def test_extract_answer_rejects_non_text():
    with pytest.raises(TypeError, match="text"):
        extract_answer(None, 4)  # type: ignore[arg-type]


# Reasoning text without anything that looks like an answer statement or a lone capital letter.
_reasoning = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.0123456789+-=\n", max_size=200).filter(
    lambda s: "answer" not in s
)


@settings(max_examples=300, deadline=None)
@given(prefix=_reasoning, n_options=st.integers(2, 20), data=st.data())
def test_canonical_reply_round_trips(prefix, n_options, data):
    index = data.draw(st.integers(0, n_options - 1))
    style = data.draw(st.sampled_from(["The answer is ({})", "the answer is {}.", "Answer: {}", "$\\boxed{{{}}}$"]))
    text = f"{prefix}\n{style.format(LETTERS[index])}"
    assert extract_answer(text, n_options) == index


@settings(max_examples=300, deadline=None)
@given(prefix=_reasoning, first=st.integers(0, 19), last=st.integers(0, 19), n_options=st.integers(2, 20))
def test_last_answer_statement_wins_and_range_is_checked(prefix, first, last, n_options):
    text = f"{prefix} The answer is ({LETTERS[first]}). Hmm, no: the answer is ({LETTERS[last]})."
    expected = last if last < n_options else NO_ANSWER
    assert extract_answer(text, n_options) == expected
