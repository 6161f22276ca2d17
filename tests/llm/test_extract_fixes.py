"""Three extractor bugs found by mutation testing (docs/testing.md, "Mutation testing"), fixed in
extractor version 3, and the readings next to them that must not change.

1. a verdict ``not A but B`` named nothing, though the module docstring says ``not A but B`` names B;
2. in the weak rules a bare ``A`` before any lowercase word was taken as the article, also where the
   word never follows the article (``A must be correct``, ``So it's A for sure``, ``A or C``);
3. a reply longer than TAIL_CHARS whose tail is blank never had its head read, though the docstring
   says the first HEAD_CHARS characters are read for replies that open with the letter.

Every expectation is what the rules of :mod:`cascal.llm.extract` (its module docstring) give, decided
before running the extractor.
"""

from __future__ import annotations

import pytest

from cascal.llm.extract import EXTRACTOR_VERSION, HEAD_CHARS, TAIL_CHARS, find_letter

REASONING = "Let's think step by step. Rates rose, so borrowing costs more and investment falls."


def test_the_fixed_extractor_has_a_new_version():
    # cached replies are re-read when the version changes: the fixes read some replies differently
    assert EXTRACTOR_VERSION >= 3


# ----------------------------------------------------------------------------- 1: "not A but B" in a verdict
@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("It's not A but B.", "B"),
        ("I think it is not A but B.", "B"),
        (f"{REASONING}\nIt's not A but B.", "B"),
        (f"{REASONING}\nI think it's not (A) but (B).", "B"),
        (f"{REASONING}\nIt's not A, but B.", "B"),
        (f"{REASONING}\nIt's not B but A.", "A"),
        # the last verdict decides: an earlier verdict is overruled by "not A but B"
        (f"{REASONING}\nI think (D).\nOn reflection, it's not D but C.", "C"),
        # a verdict beats the layout rule
        (f"{REASONING}\nIt's not A but B.\n(C)", "B"),
        # "not A but B or C" hedges at the deciding verdict: refused, the earlier (D) is overruled
        (f"{REASONING}\nI think (D).\nHmm, it's not A but B or C.", None),
    ],
)
def test_a_verdict_not_a_but_b_names_b(text, letter):
    assert find_letter(text) == letter


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        # the statement rule already read "not A but B"
        ("The answer is not A but B.", "B"),
        (f"{REASONING}\nThe answer is not (A) but (B).", "B"),
        # a plain negation still names nothing
        ("It's not A.", None),
        (f"{REASONING}\nI think it's not B.", None),
        # ... and leaves a weaker rule or an earlier verdict to decide
        (f"{REASONING}\n$\\boxed{{C}}$\nIt's not A.", "C"),
        (f"{REASONING}\nI think (D). It's definitely not B.", "D"),
        # a negation before the verdict cue turns it around
        (f"{REASONING}\nI think (D). It's not so B.", "D"),
    ],
)
def test_other_negations_read_as_before(text, letter):
    assert find_letter(text) == letter


# ----------------------------------------------------------------------------- 2: option A or the article
@pytest.mark.parametrize(
    "text",
    [
        "A appears to be correct.",
        "A must be correct.",
        "A stands out as the only consistent option.",
        "Thus A matches the data.",
        "So it's A for sure.",
        f"{REASONING}\nA appears to be correct.",
        f"{REASONING}\nTherefore A should be correct.",
        f"{REASONING}\nA best matches the data.",
        f"{REASONING}\nI think it's A, since investment falls.",
        f"{REASONING}\nSo it's A here.",
    ],
)
def test_a_before_a_word_that_never_follows_the_article_is_option_a(text):
    assert find_letter(text) == "A"
    # the same reply with B reads B: the letter A is no special case
    assert find_letter(text.replace("A ", "B ").replace("A,", "B,").replace("A.", "B.")) == "B"


@pytest.mark.parametrize("joined", ["A or C", "A and C", "A or maybe C"])
def test_a_hedge_on_option_a_at_the_last_verdict_is_refused(joined):
    # the last verdict decides and hedges between two options: refused, the earlier (D) is overruled
    assert find_letter(f"{REASONING}\nI think (D). Actually, I think {joined}.") is None
    assert find_letter(f"{REASONING}\nI think (D). Actually, I think {joined.replace('A', 'B')}.") is None


def test_a_hedge_after_not_x_but_a_is_refused():
    assert find_letter(f"{REASONING}\nI think (D). Hmm, it's not B but A or C.") is None


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        # the article starts a sentence that commits to nothing
        ("A student might say B.", None),
        (f"{REASONING}\nSo A student would pick C.", None),
        # the article after a verdict's option is no list of two options
        (f"{REASONING}\nSo it's B, A solid choice.", "B"),
        (f"{REASONING}\nI think it's B, A reasonable choice.", "B"),
        (f"{REASONING}\nSo the answer is B, A solid choice.", "B"),
        # a word that never follows the article, hyphenated into a compound noun, follows it after all
        (f"{REASONING}\nI think (C). Thus A for-profit firm would raise prices.", "C"),
        (f"{REASONING}\nI think (C). So it's B, A must-have.", "B"),
        # a later verdict that opens with the article does not overrule an earlier one
        (f"{REASONING}\nI think (C). So A good reason is the rate.", "C"),
    ],
)
def test_the_article_a_is_still_no_option(text, letter):
    assert find_letter(text) == letter


@pytest.mark.parametrize("text", ["A student might say B.", "A reasonable choice is B."])
def test_the_article_a_opening_a_reply_is_never_option_a(text):
    assert find_letter(text) != "A"
    assert find_letter(f"{REASONING}\n{text}") != "A"


def test_the_pronoun_i_reads_as_before():
    assert find_letter(f"{REASONING}\nI think I'd pick (C).") == "C"
    assert find_letter(f"{REASONING}\nI think I must be wrong about (C).") is None
    assert find_letter(f"{REASONING}\nThe answer is I.") == "I"


# ----------------------------------------------------------------------------- 3: a blank tail
BLANK_TAILS = {"newlines": "\n" * 5000, "spaces": " " * 5000, "mixed": " \n\t" * (TAIL_CHARS // 3 + 10)}


@pytest.mark.parametrize("tail", list(BLANK_TAILS))
def test_a_reply_opening_with_its_letter_is_read_when_its_long_tail_is_blank(tail):
    text = "B) because rates rise." + BLANK_TAILS[tail]
    assert len(text) > TAIL_CHARS
    assert find_letter(text) == "B"
    assert find_letter("(C) Investment falls.\nFirms borrow less." + BLANK_TAILS[tail]) == "C"


@pytest.mark.parametrize("tail", list(BLANK_TAILS))
def test_a_blank_tail_reads_only_what_the_head_rules_read(tail):
    blank = BLANK_TAILS[tail]
    # only an opener is read from the head; nothing at all from a blank reply
    assert find_letter(blank) is None
    assert find_letter("The answer is (B)." + blank) is None
    # the head lists options line by line, or says it cannot tell: no answer
    assert find_letter("(A) Paris\n(B) London" + blank) is None
    assert find_letter("B) I cannot determine the answer." + blank) is None
    # the opener must sit in the first HEAD_CHARS characters
    assert find_letter("x" * HEAD_CHARS + "\nB) because rates rise." + blank) is None


@pytest.mark.parametrize(
    "text",
    [
        # after "not C but" the article starts a noun phrase: the verdict names no option
        f"{REASONING}\nIt's not C but A mix of several effects.",
        f"{REASONING}\nI think it is not C but A combination of causes.",
    ],
)
def test_the_article_a_after_not_x_but_names_nothing(text):
    assert find_letter(text) is None
