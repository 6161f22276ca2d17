"""Fuzzing the generation parser, a reader of untrusted text (the dataset loaders are fuzzed in
tests/io/test_fuzz_dataset.py).

Contract under test: ``parse_questions`` on any text returns valid questions and a consistent
report, never raises. Every case is bounded in time: hypothesis's ``deadline`` fails an example over
1 s, and the pathological inputs are timed explicitly.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascal.data import MAX_OPTIONS
from cascal.generation.parser import SKIP_REASONS, parse_questions

FUZZ = settings(max_examples=120, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
# seconds per pathological case, the faster of two runs: linear parsing takes about 0.3 s on the largest
# (30k blocks) on an idle 2-core machine, and one run of 1.2 s was seen on a busy CI machine; a quadratic
# or backtracking path is slow on every run
BUDGET = 1.5


# ----------------------------------------------------------------------------- generation parser
def assert_parse_contract(text: str) -> None:
    questions, report = parse_questions(text)
    assert report.replies == 1
    assert report.valid == len(questions)
    assert report.blocks == report.valid + report.n_skipped
    assert report.empty_replies == int(report.blocks == 0)
    assert set(report.skipped) <= set(SKIP_REASONS)
    for q in questions:
        assert q.question and q.question == q.question.strip()
        assert 2 <= len(q.options) <= MAX_OPTIONS
        assert all(q.options) and len(set(q.options)) == len(q.options)
        assert 0 <= q.answer < len(q.options)


TOKENS = st.sampled_from(
    [
        "<question>",
        "</question>",
        "<option>",
        "</option>",
        "<answer>",
        "</answer>",
        "<QUESTION id=1>",
        "<option\n>",
        "< answer>",
        "<item>",
        "A) ",
        "(B) ",
        "[C] ",
        "D. ",
        "Answer: C",
        "The answer is (D)",
        "**E**",
        "\n",
        "\r\n",
        "\r",
        " ",
        "\t",
        "x < y",
        "[1, 2]",
        "answer",
        "option",
        "choice",
        "is",
        ":",
        "(",
        ")",
        "*",
        "`",
        '"',
        "'",
        "b",
        "B",
    ]
)
tag_soup = st.lists(TOKENS | st.text(max_size=4), max_size=80).map("".join)


@FUZZ
@given(st.text(max_size=400) | tag_soup)
def test_parser_on_arbitrary_text_keeps_its_contract(text):
    assert_parse_contract(text)


def test_parser_rejects_only_non_strings():
    with pytest.raises(TypeError, match="text: expected the generator's reply as str"):
        parse_questions(b"<question>q</question>")


BLOCK = "<question>q</question><option>a</option><option>b</option><answer>{}</answer>"
PARSER_CASES = {
    "1 MB of [[[": "[[[" * 350_000,
    "100k lines": "<question>q\n" + "line\n" * 100_000,
    "100k-character option": "<question>q</question><option>"
    + "o" * 100_000
    + "</option><option>b</option><answer>A</answer>",
    "30k blocks": "<question>q</question>" * 30_000,  # quadratic if the tag list is copied once per tag
    "100k closing tags in one field": "<question>q" + "</option>" * 100_000,
    # catastrophic backtracking if two quantifiers compete for one run of whitespace
    "tag with 1 MB of spaces": "<option" + " " * 1_000_000,
    "tag with spaces then text": "<answer" + " " * 500_000 + "x" * 500_000,
    "answer word then 1 MB of spaces": BLOCK.format("answer" + " " * 1_000_000 + "!"),
    "decorated answer then 1 MB of spaces": BLOCK.format("*" + " " * 1_000_000 + "!"),
    "bracketed answer then 1 MB of spaces": BLOCK.format("(" + " " * 1_000_000 + "!"),
    "letter then 1 MB of spaces": BLOCK.format("C" + " " * 1_000_000 + "!"),
    "100k 'answer is'": BLOCK.format("answer is " * 100_000 + "!"),
    "100k 'option: '": BLOCK.format("option: " * 100_000),
}


@pytest.mark.parametrize("name", list(PARSER_CASES))
def test_parser_pathological_inputs_are_fast(name):
    text = PARSER_CASES[name]
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        assert_parse_contract(text)
        runs.append(time.perf_counter() - start)
    elapsed = min(runs)
    assert elapsed < BUDGET, f"{name}: {elapsed:.2f} s"
