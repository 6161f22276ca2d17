"""The fast cue search of cascal.llm.extract (patterns tried only where their opening words occur)
finds exactly what the plain pattern search finds, on generated text made of cue words, options and
punctuation (tests/llm/test_extract_real_replies.py checks the same on every real reply)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.llm import extract

PIECES = [
    "The answer is",
    "the correct option is",
    "Answer:",
    "Final Answer:",
    "I think",
    "I'd say",
    "It's",
    "it is",
    "So",
    "Therefore,",
    "thus",
    "the closest is",
    "the best one is",
    "probably",
    "most likely",
    "option",
    "Option",
    "choice",
    "(B)",
    "B",
    "C.",
    "(A)",
    "A",
    "is correct",
    "is the best answer",
    "stands out",
    "not",
    "or",
    "and",
    "I",
    "we are left with",
    "La respuesta es",
    "答案是",
    "所以选",
    "正确",
    "我认为",
    "정답은",
    "Ответ -",
    "Die Antwort ist",
    "cannot determine",
    "don't know",
    "no answer is correct",
    " ",
    " ",
    "\n",
    ".",
    ",",
    "İ",
    "x",
    "so",
    "something",
]
TEXT = st.lists(st.sampled_from(PIECES), max_size=40).map("".join) | st.text(max_size=60)
CUES = (extract._STATEMENT, extract._LABEL, extract._VERDICT, extract._OPTION_CUE)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_cue_matches_are_the_plain_pattern_matches(text):
    for cue in CUES:
        assert [m.span() for m in cue.finditer(text)] == [m.span() for m in cue.regex.finditer(text)]


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_praised_options_and_cannot_tell_are_the_plain_searches(text):
    for numbered in (False, True):
        plain = [
            m.span()
            for m in extract._LETTER_FIRST[numbered].finditer(text)
            if extract._VERDICT_AFTER.match(text, m.end())
        ]
        assert [m.span() for m in extract._praised_options(text, numbered)] == plain
    assert extract._cannot_tell(text) == bool(extract._CANNOT_TELL.search(text))
