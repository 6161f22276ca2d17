"""The extractor on replies at the edges of its rules: hedges and lists (the bare letters A and I
as article and pronoun), conditions and "cannot tell", a reply's opening letter and its option
listings, boxed and numbered options, replies cut off after the cue, and input that is not text.

Each test pins the behaviour the module docstring of :mod:`cascal.llm.extract` documents (the five
rules, what is refused, the bounded read); every expectation is what a careful reader reads by
those rules, decided before running the extractor.
"""

from __future__ import annotations

import pytest

from cascal.data import NO_ANSWER
from cascal.llm.extract import HEAD_CHARS, TAIL_CHARS, extract_answer, find_choice, find_letter

REASONING = "Let's think step by step. Rates rose, so borrowing costs more and investment falls."


# ----------------------------------------------------------------------------- hedges and lists
def test_a_hedge_with_the_bare_letter_a_or_i_is_refused():
    # "B or A": two options where one is asked for, whatever the letters
    assert find_letter(f"{REASONING}\nThe answer is B or A.") is None
    assert find_letter(f"{REASONING}\nThe answer is H or I.") is None


def test_not_x_but_a_names_option_a():
    # "not A but B names B", also when the named option is the bare capital A
    assert find_letter(f"{REASONING}\nThe answer is not B but A.") == "A"


def test_the_article_a_after_the_answer_is_no_second_option():
    # "A" starting a phrase ("A solid choice", "A quick check") is the article, not a hedge or a list
    assert find_letter(f"{REASONING}\nSo the answer is B, A solid choice.") == "B"
    assert find_letter(f"{REASONING}\nThe answer is (B), and A quick check of the signs confirms it.") == "B"


def test_the_pronoun_i_after_the_answer_is_no_second_option():
    # "B, I think": the English pronoun, never option I, so no list of two options
    assert find_letter(f"{REASONING}\nThe answer is B, I think.") == "B"


def test_an_answer_label_listing_two_options_is_refused():
    # a label is a strong rule: "B, D" lists two options where one is asked for
    assert find_letter(f"{REASONING}\nFinal answer: B, D") is None
    assert find_letter(f"{REASONING}\nAnswer: (B), (D)") is None


def test_a_hedge_word_at_the_deciding_statement_refuses_instead_of_falling_back_to_a_box():
    # the statement rule decides, and it hedges ("unclear"): the weaker box is not consulted
    text = "At first glance $\\boxed{B}$ fits.\nOn reflection, the answer is unclear: the data fit both B and D."
    assert find_letter(text) is None


def test_a_hedging_last_verdict_refuses_instead_of_an_earlier_verdict():
    # within the verdict rule the last match decides; it hedges, so the reply is refused
    assert find_letter(f"{REASONING}\nI think (D).\nRe-reading the question, I think it's B or C.") is None


def test_options_dismissed_in_a_verdict_leave_the_final_letter_to_decide():
    # "(A) and (B) are both wrong" names nothing: the lone last line (layout rule) decides
    assert find_letter(f"{REASONING}\nI think (A) and (B) are both wrong.\n(C)") == "C"


def test_options_listed_in_a_verdict_name_nothing_and_the_final_letter_decides():
    # "Therefore, B, C and D are ruled out": a list in a weak rule is no answer and no hedge
    assert find_letter(f"{REASONING}\nLet me eliminate the wrong ones.\nTherefore, B, C and D are ruled out.\nA") == "A"


# ----------------------------------------------------------------------------- conditions and "cannot tell"
def test_a_verdict_after_a_conditional_verdict_still_counts():
    # "If it's B" is a condition (no answer); the verdict after it commits
    assert find_letter("If it's B, demand rises, which contradicts the data. I think it's (C).") == "C"


def test_a_verdict_on_a_line_that_cannot_tell_is_no_answer_even_at_the_start_of_the_reply():
    assert find_letter("Not enough information to be sure, but probably B.") is None


def test_cannot_tell_only_silences_its_own_line():
    text = "Without the elasticity, I cannot determine the exact size of the effect.\nStill, I think (C)."
    assert find_letter(text) == "C"


# ----------------------------------------------------------------------------- layout: openers and lists
def test_a_reply_opening_with_its_letter_is_read_when_a_later_line_cannot_tell():
    # "cannot tell" refuses the verdicts and layout of its own line, not the opener on the first line
    assert find_letter("B) Higher rates reduce investment.\nHow long that lasts, I cannot say.") == "B"
    text = "B) Higher rates reduce investment.\nHow long that lasts, I cannot say.\nFirms borrow less when rates rise."
    assert find_letter(text) == "B"


def test_a_reply_opening_with_letter_dash_is_read():
    assert find_letter("B - higher rates reduce investment.\nFirms borrow less when credit is dear.") == "B"


def test_a_final_line_opening_with_its_letter_and_option_text_is_read():
    # "(A), E. coli": the letter, then the option's text (which starts with a capital)
    assert find_letter("The organism is gram-negative and ferments lactose.\n(A), E. coli") == "A"


def test_a_reply_that_only_lists_options_is_no_answer():
    # "Option X. <text>" opening a line lists an option, also on the reply's very first line
    assert find_letter("Option A. Paris\nOption B. London") is None
    assert find_letter("Option A. Paris\nOption B. London\nOption C. Rome") is None


def _one_line_reply(length: int) -> str:
    """A one-line reply of ``length`` characters that opens with ``B)`` and, past the first
    ``HEAD_CHARS`` characters, says it cannot determine the answer."""
    opener = "B) seems plausible at first, "
    ending = "but I cannot determine the answer from the information given."
    filler = "higher rates raise borrowing costs and investment falls "
    middle = (filler * (length // len(filler) + 1))[: length - len(opener) - len(ending)]
    text = opener + middle + ending
    assert len(text) == length and text.index("cannot") > HEAD_CHARS
    return text


@pytest.mark.parametrize("length", [HEAD_CHARS + 100, TAIL_CHARS - 1, TAIL_CHARS])
def test_a_reply_no_longer_than_the_tail_is_read_whole_so_its_opener_line_cannot_tell(length):
    # the whole reply is read; its only line opens with B) but says it cannot tell: no answer
    assert find_letter(_one_line_reply(length)) is None


# ----------------------------------------------------------------------------- boxes and numbered options
def test_a_boxed_negative_number_is_no_option_number():
    # "-3" is a quantity, not option 3
    text = "Solving the equation gives x = -3.\n$\\boxed{-3}$"
    assert extract_answer(text, 5, numbered=True) == NO_ANSWER
    assert find_choice(text, numbered=True) is None


def test_a_zero_after_a_verdict_cue_does_not_undo_the_chosen_option_number():
    # "it is 0 at x = 1" is a value in the reasoning; the reply picked option 2
    assert extract_answer("I think it's option 2, since it is 0 at x = 1.", 5, numbered=True) == 1


# ----------------------------------------------------------------------------- truncated replies and bad input
@pytest.mark.parametrize("ending", ["The answer is:", "Final answer:", "The answer is -"])
def test_a_reply_cut_off_right_after_the_cue_is_no_answer(ending):
    assert find_letter(f"{REASONING}\n{ending}") is None


@pytest.mark.parametrize("bad", [42, b"The answer is (B)", ["The answer is (B)"]])
def test_non_text_is_refused_with_a_message_naming_its_type(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        find_choice(bad)  # type: ignore[arg-type]
