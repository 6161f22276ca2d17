"""The extractor's documented rule priority (docs/algorithm.md#answering, cascal.llm.extract): an
answer statement ("the answer is (X)") beats an answer label ("Answer: X"), which beats a box
(``\\boxed{X}``), which beats a lone letter on the final line; within one rule the last match wins.

Every pair of rules is tried in both orders in the text, so a reordering of the rules, or a rule that
reads the first match instead of the last, fails here. Expected letters follow from the documented
priority alone.
"""

from __future__ import annotations

import itertools

import pytest

from cascal.llm.extract import find_letter

REASONING = "Let's think step by step. Rates rose, so borrowing costs more and investment falls."

#: The rules, strongest first: a phrase that commits to ``{}`` by that rule alone.
RULES = {
    "statement": "So the answer is ({}).",
    "label": "Answer: {}",
    "box": "$\\boxed{{{}}}$",
    "lone": "({})",  # only as the final line
}
ORDER = list(RULES)


def reply(*parts: str) -> str:
    return "\n".join([REASONING, *parts])


@pytest.mark.parametrize("rule", ORDER)
def test_each_rule_alone_reads_its_letter(rule):
    assert find_letter(reply(RULES[rule].format("G"))) == "G"


PAIRS = [(strong, weak) for strong, weak in itertools.combinations(ORDER, 2)]


@pytest.mark.parametrize(("strong", "weak"), PAIRS)
def test_stronger_rule_wins_when_it_comes_first(strong, weak):
    text = reply(RULES[strong].format("C"), RULES[weak].format("B"))
    assert find_letter(text) == "C", text


@pytest.mark.parametrize(("strong", "weak"), [p for p in PAIRS if p[1] != "lone"])
def test_stronger_rule_wins_when_it_comes_last(strong, weak):
    text = reply(RULES[weak].format("B"), RULES[strong].format("C"))
    assert find_letter(text) == "C", text


@pytest.mark.parametrize("rule", ["statement", "label", "box"])
def test_within_a_rule_the_last_match_wins(rule):
    text = reply(RULES[rule].format("B"), "On second thought, let me recheck.", RULES[rule].format("E"))
    assert find_letter(text) == "E", text


def test_a_statement_beats_an_earlier_box_and_a_later_label():
    assert find_letter("... $\\boxed{B}$ ... So the answer is (C).") == "C"
    assert find_letter(f"{REASONING} The answer is (B).\nAnswer: C") == "B"
    # all four rules at once, weakest last: the statement decides
    assert find_letter(reply("Answer: D", "$\\boxed{E}$", "The answer is (A).", "(F)")) == "A"


@pytest.mark.parametrize(
    "text",
    [
        "Let us review the options.\nOption A. Paris\nOption B. London",
        "The capitals in question:\nOption B. Paris",
        "Reading the choices.\nOption C: Rome, the capital of Italy",
    ],
)
def test_a_line_opening_with_option_x_is_a_list_entry_not_a_verdict(text):
    # "Option X" opening a line that goes on lists an option; it commits to nothing
    assert find_letter(text) is None


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("Reading the choices, the fit is option C.", "C"),
        ("Reading the choices.\nOption C.", "C"),  # a lone option on the last line (layout rule)
    ],
)
def test_option_x_ending_a_sentence_commits(text, letter):
    assert find_letter(text) == letter


# ----------------------------------------------------------------------------- edge cases found by mutation testing
# (docs/testing.md): each expectation is what a careful reader reads.
@pytest.mark.parametrize(
    ("text", "letter"),
    [
        # a box closes at its own brace: the dismissed option after it is not part of the box
        (f"{REASONING}\n$\\boxed{{B}}$ and (C) is wrong.", "B"),
        # a verdict under a condition at the very start of the reply commits to nothing
        ("If it's B, the rate falls.", None),
        # "A" starting a phrase after the option is the article, not a second option
        (f"{REASONING} So it's B, A solid choice.", "B"),
        # a bare capital A alone on the last line is option A
        (f"{REASONING}\nA", "A"),
        # two options listed line by line: a list, not an answer
        ("Options:\n(A) Paris\n(B) London", None),
        # a nested box closes at its own brace too
        (f"{REASONING}\n$\\boxed{{\\text{{B}}}}$ and (C) is wrong.", "B"),
        # "Option C." alone on its line commits, even when a sentence follows on the next line
        ("Reading the choices, I land on:\nOption C.\nThat settles it.", "C"),
        # and so does "option C." ending a sentence inside a line
        ("Reading the choices, the fit is option C. That settles it.", "C"),
    ],
)
def test_edge_cases(text, letter):
    assert find_letter(text) == letter
