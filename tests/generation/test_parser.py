"""The tagged-block parser on nasty, hand-written generator replies."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.generation.parser import SKIP_REASONS, ParsedQuestion, parse_questions


def block(stem: str, options: list[str], answer: str) -> str:
    opts = "\n".join(f"<option>{o}</option>" for o in options)
    return f"<question>\n{stem}\n</question>\n{opts}\n<answer>{answer}</answer>"


def test_plain_block() -> None:
    qs, rep = parse_questions(block("What is 2 + 2?", ["3", "4", "5", "22"], "B"))
    assert qs == [ParsedQuestion("What is 2 + 2?", ("3", "4", "5", "22"), 1)]
    assert qs[0].answer_letter == "B"
    assert (rep.blocks, rep.valid, rep.n_skipped, rep.replies, rep.empty_replies) == (1, 1, 0, 1, 0)


def test_latex_brackets_and_stray_parens_survive() -> None:
    stem = r"Evaluate $\frac{a}{b} + \left[1, 2\right]$ where (A) is a set {x | x < 3} and f(x) = [1, 2]."
    options = [r"$\frac{1}{2}$", "[1, 2]", "(A) itself", r"\{x < 3\}"]
    qs, rep = parse_questions(block(stem, options, "(C)"))
    assert rep.valid == 1
    assert qs[0].question == stem
    assert qs[0].options == tuple(options)  # "(A) itself" alone does not make the options labelled
    assert qs[0].answer == 2


def test_markdown_fences_chatter_and_crlf() -> None:
    body = "\n\n".join(
        [block("First question?", ["yes", "no"], "A"), block("Second\n\nmulti-line\nquestion?", ["x", "y", "z"], "C")]
    )
    reply = f"Sure! Here are your questions:\n\n```xml\n{body}\n```\n\nLet me know if you need more!"
    qs, rep = parse_questions(reply.replace("\n", "\r\n"))
    assert [q.question for q in qs] == ["First question?", "Second\n\nmulti-line\nquestion?"]
    assert [q.answer for q in qs] == [0, 2]
    assert all("\r" not in q.question and all("\r" not in o for o in q.options) for q in qs)
    assert rep.valid == 2 and rep.n_skipped == 0


def test_fenced_code_inside_a_stem_is_kept() -> None:
    stem = "What does this print?\n```python\nprint([1, 2][-1])\n```"
    qs, _ = parse_questions(block(stem, ["1", "2", "[1, 2]", "error"], "B"))
    assert qs[0].question == stem


def test_twenty_options_accepted_twentyone_rejected() -> None:
    twenty = [f"choice {i}" for i in range(20)]
    qs, rep = parse_questions(block("Pick the last.", twenty, "T"))
    assert len(qs) == 1 and len(qs[0].options) == 20 and qs[0].answer == 19
    qs, rep = parse_questions(block("Too many.", twenty + ["one more"], "A"))
    assert qs == [] and rep.skipped == {"too_many_options": 1}


def test_one_option_and_zero_options_are_too_few() -> None:
    reply = block("Only one?", ["lonely"], "A") + "\n<question>No options at all?</question><answer>A</answer>"
    qs, rep = parse_questions(reply)
    assert qs == [] and rep.blocks == 2 and rep.skipped == {"too_few_options": 2}


def test_missing_answer_and_answer_beyond_options() -> None:
    reply = "\n".join(
        [
            "<question>No key here?</question><option>a</option><option>b</option>",
            block("Key beyond options?", ["a", "b", "c"], "D"),
            block("Empty key?", ["a", "b"], "  "),
            block("Fine?", ["a", "b"], "b"),
        ]
    )
    qs, rep = parse_questions(reply)
    assert [q.question for q in qs] == ["Fine?"] and qs[0].answer == 1
    assert rep.skipped == {"missing_answer": 2, "answer_out_of_range": 1}
    assert rep.blocks == 4 and rep.valid == 1


def test_answer_spellings() -> None:
    opts = ["red", "green", "blue", "black"]
    for raw, expected in [
        ("C", 2),
        ("(C)", 2),
        ("[C]", 2),
        ("C)", 2),
        ("C.", 2),
        ("**C**", 2),
        ("c", 2),
        ("C) blue", 2),
        ("Answer: C", 2),
        ("The answer is (C).", 2),
        ("The correct option is B", 1),
        ("blue", 2),
    ]:
        qs, rep = parse_questions(block("Which colour?", opts, raw))
        assert [q.answer for q in qs] == [expected], raw


def test_unusable_answers_counted_by_reason() -> None:
    opts = ["red", "green", "blue"]
    reply = "\n".join(
        [
            block("Not a letter?", opts, "purple"),
            block("Two keys?", opts, "A") + "<answer>B</answer>",
            block("Same key twice?", opts, "A") + "<answer>(A)</answer>",
        ]
    )
    qs, rep = parse_questions(reply)
    assert [q.question for q in qs] == ["Same key twice?"]
    assert rep.skipped == {"invalid_answer": 1, "conflicting_answers": 1}


def test_labelled_options_are_stripped_only_when_all_in_order() -> None:
    qs, _ = parse_questions(block("Labelled?", ["A) one", "B) two", "(C) three", "D. four"], "D"))
    assert qs[0].options == ("one", "two", "three", "four")
    qs, _ = parse_questions(block("Partly labelled?", ["A) one", "two", "C) three"], "A"))
    assert qs[0].options == ("A) one", "two", "C) three")
    qs, _ = parse_questions(block("Out of order?", ["B) one", "A) two"], "A"))
    assert qs[0].options == ("B) one", "A) two")


def test_missing_closing_tags_and_case_and_attributes() -> None:
    reply = "<QUESTION>Unclosed stem?\n<Option id='1'>first\n<option>second</OPTION>\n<answer>B\n\nSome chatter after."
    qs, rep = parse_questions(reply)
    # the unclosed answer runs to the end of the reply; its first line names the letter
    assert qs == [ParsedQuestion("Unclosed stem?", ("first", "second"), 1)]
    reply = "<QUESTION>Unclosed stem?\n<Option id='1'>first\n<option>second</OPTION>\n<answer>B</answer>\nbye"
    qs, rep = parse_questions(reply)
    assert qs == [ParsedQuestion("Unclosed stem?", ("first", "second"), 1)]


def test_wrapper_tags_plural_options_tag_and_text_angle_brackets() -> None:
    reply = (
        "<item>\n<question>Is a < answer > b a tag?</question>\n<options>\n<option>no</option>\n"
        "<option>yes</option>\n</options>\n<answer>A</answer>\n</item>"
    )
    qs, rep = parse_questions(reply)
    assert qs == [ParsedQuestion("Is a < answer > b a tag?", ("no", "yes"), 0)]


def test_duplicate_blocks_are_both_returned_for_dedupe() -> None:
    one = block("Same?", ["a", "b"], "A")
    qs, rep = parse_questions(one + "\n" + one)
    assert len(qs) == 2 and qs[0] == qs[1] and rep.valid == 2


def test_empty_stem_empty_option_duplicate_options() -> None:
    reply = "\n".join(
        [
            block("   ", ["a", "b"], "A"),
            block("Empty option?", ["a", " "], "A"),
            block("Same options?", ["a", "a"], "A"),
        ]
    )
    qs, rep = parse_questions(reply)
    assert qs == [] and rep.skipped == {"empty_question": 1, "empty_option": 1, "duplicate_options": 1}


def test_stray_fields_and_garbage() -> None:
    qs, rep = parse_questions("<option>orphan</option><answer>A</answer> then nothing")
    assert qs == [] and rep.stray_fields == 2 and rep.blocks == 0 and rep.empty_replies == 1
    qs, rep = parse_questions("I'm sorry, I can't help with that.")
    assert qs == [] and rep.empty_replies == 1 and rep.blocks == 0
    qs, rep = parse_questions("")
    assert qs == [] and rep.empty_replies == 1


def test_rejects_non_string() -> None:
    with pytest.raises(TypeError, match="text"):
        parse_questions(b"<question>x</question>")  # type: ignore[arg-type]


def test_report_merge_adds_counts() -> None:
    _, a = parse_questions(block("Q1?", ["a", "b"], "A") + block("Q2?", ["a"], "A"))
    _, b = parse_questions("garbage")
    a.merge(b)
    assert a.to_dict() == {
        "replies": 2,
        "empty_replies": 1,
        "blocks": 2,
        "valid": 1,
        "skipped": {"too_few_options": 1},
        "stray_fields": 0,
    }
    assert set(a.skipped) <= set(SKIP_REASONS)


_text = st.text(alphabet=string.ascii_letters + string.digits + " []{}()\\$^_+-=.,;:?!|'\"\n", min_size=1, max_size=60)
_clean = _text.map(str.strip).filter(lambda s: s != "" and "<" not in s)


@settings(max_examples=150, deadline=None)
@given(
    stem=_clean,
    options=st.lists(_clean, min_size=2, max_size=20, unique=True),
    data=st.data(),
    crlf=st.booleans(),
)
def test_roundtrip_property(stem: str, options: list[str], data: st.DataObject, crlf: bool) -> None:
    """Any well-formed block comes back exactly, whatever brackets, LaTeX or line endings it holds.
    (Options start with "~" so that none looks like an "A) " label; label stripping is tested above.)"""
    options = ["~" + o for o in options]
    answer = data.draw(st.integers(0, len(options) - 1))
    reply = "noise before\n" + block(stem, options, "ABCDEFGHIJKLMNOPQRST"[answer]) + "\nnoise after"
    if crlf:
        reply = reply.replace("\n", "\r\n")
    qs, rep = parse_questions(reply)
    assert rep.blocks == 1 and len(qs) == 1
    q = qs[0]
    assert q.answer == answer
    assert q.question == "\n".join(line.rstrip() for line in stem.split("\n")).strip()
    assert q.options == tuple("\n".join(line.rstrip() for line in o.split("\n")) for o in options)
