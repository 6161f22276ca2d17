"""The reply's own part and loops (cascal.llm.extract, "The reply's own part" and "Loops"), pinned the
way tests/llm/test_extract_priority.py pins the rules: a reply that runs on into a new question is read
before it, whatever rule the run-on part would satisfy; a loop of conflicting answers is read by its
first answer, while answers with reasoning between them still read by the last. The Markdown and
"Final Answer" families that already read well are kept here too, so they stay read.

Every expectation is what a careful reader reads, decided before running the extractor.
"""

from __future__ import annotations

import pytest

from cascal.llm.extract import EXTRACTOR_VERSION, TAIL_CHARS, find_letter, own_part

REASONING = "Let's think step by step. Rates rose, so borrowing costs more and investment falls."

#: a new question a few-shot base model writes after its answer (the prompt's own scaffold)
NEW_QUESTION = (
    "Question:\nWhich of the following is a tool of fiscal policy?\nOptions:\nA. Open market operations\n"
    "B. The discount rate\nC. Government spending\nD. Reserve requirements\n"
    "Answer: Let's think step by step. Fiscal policy is taxes and spending."
)

#: the rules, strongest first, as in test_extract_priority.py: a phrase that commits to ``{}``
RULES = {
    "statement": "So the answer is ({}).",
    "label": "Answer: {}",
    "box": "$\\boxed{{{}}}$",
    "lone": "({})",
}


def test_the_version_is_bumped():
    assert EXTRACTOR_VERSION >= 4


# ----------------------------------------------------------------------------- runs on into a new question
@pytest.mark.parametrize("before", list(RULES))
@pytest.mark.parametrize("after", list(RULES))
def test_the_answer_before_a_new_question_wins_over_any_rule_after_it(before, after):
    # every pair of rules: the reply's own answer (before) against the invented question's (after)
    own = RULES[before].format("B")
    text = f"{REASONING}\n{own}\n\n{NEW_QUESTION} {RULES[after].format('F')}"
    assert find_letter(text) == "B", text


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        # the family: the answer, then a new question with its own worked answer
        (f"{REASONING} The answer is (B).\n\n{NEW_QUESTION} The answer is (C).", "B"),
        # headings in other shapes: numbered, markdown, "Q:", the prompt's instruction line
        (f"{REASONING} The answer is (B).\n\nQuestion 2: What is fiscal policy?\nThe answer is (C).", "B"),
        (f"{REASONING} The answer is (B).\n\n**Question:** What is fiscal policy?\nThe answer is (C).", "B"),
        (f"{REASONING} The answer is (B).\nQ: What is fiscal policy?\nA: The answer is (C).", "B"),
        (
            f"{REASONING} The answer is (B).\n\nThe following are multiple choice questions (with answers) "
            "about economics.\n\nQuestion: What is fiscal policy? The answer is (C).",
            "B",
        ),
        # the run-on part is a truncated question: its options list is no answer either
        (f"{REASONING} The answer is (E).\n\nQuestion:\nWhich of these is a tax?\nOptions:\nA. VAT\nB. A", "E"),
        # no answer before the new question: the invented question's answer is not the reply's
        (f"{REASONING}\n\n{NEW_QUESTION} The answer is (C).", None),
        (f"{REASONING}\n\n{NEW_QUESTION}\n\nFinal Answer:\nC. Government spending", None),
        # a reply that opens by echoing its question is not cut at the echo
        (f"Question: Which policy raises rates?\n{REASONING} The answer is (D).", "D"),
        ("  \n**Question:** Which policy raises rates?\nOptions:\nA. x\nB. y\nAnswer: The answer is (B).", "B"),
        # an options list or the scaffold without a heading cuts only after a committed answer
        (f"{REASONING} The answer is (B).\n\nOptions:\nA. Taxes\nB. Spending\nAnswer: The answer is (A).", "B"),
        (f"{REASONING} Answer: B\nAnswer: Let's think step by step. Spending is fiscal. The answer is (C).", "B"),
        # ... before one, the model may be continuing its own question's options: it is read whole
        ("fiscal policy.\nC. Taxes\nD. Spending\nAnswer: Let's think step by step. Spending. The answer is (D).", "D"),
        # "question" inside a line is no heading
        (f"{REASONING} This question: is it B? The answer is (B).", "B"),
    ],
)
def test_a_reply_is_read_before_the_new_question_it_starts(text, letter):
    assert find_letter(text) == letter


def test_own_part_cuts_at_the_heading_line():
    reply = f"{REASONING} The answer is (B).\n\n{NEW_QUESTION}"
    assert own_part(reply) == f"{REASONING} The answer is (B).\n\n"
    assert own_part(f"Question: echoed\n{REASONING}") == f"Question: echoed\n{REASONING}"


# ----------------------------------------------------------------------------- loops
@pytest.mark.parametrize(
    ("text", "letter"),
    [
        # the family: a loop of conflicting answers reads its first answer
        (f"{REASONING} The answer is (B). The answer is (H). The answer is (E).", "B"),
        (
            f"{REASONING} The answer is (H).\nThe answer is (F).\nThe answer is (D).\nThe answer is (A).\nThe answer is (",
            "H",
        ),
        (f"{REASONING} It is (F). The answer is (F).\nThe answer is (A).\nThe answer is (C).\nThe answer is (A).", "F"),
        (f"{REASONING}\nSo the answer is (C). So the answer is (D). So the answer is (A).", "C"),
        # labels loop the same way
        (f"{REASONING}\nAnswer: C\nAnswer: D\nAnswer: A\nAnswer: D", "C"),
        # a loop of one letter reads that letter
        (f"{REASONING} The answer is (G).\nThe answer is (G).\nThe answer is (G).", "G"),
        # a hedge before a loop is no part of it (text stands between): the loop's first answer decides
        (f"{REASONING} The answer is (A) or (B).\nThe answer is (C).\nThe answer is (D).", "C"),
        # "..." names nothing, so it starts no loop: the hedge is the last decisive statement
        (f"{REASONING} The answer is (A), (B), (C).\nThe answer is ...\nThe answer is ...", None),
        # reasoning between two answers is a correction, not a loop: the last decides
        (f"{REASONING}\nThe answer is (A). Wait, re-checking the sign: the answer is (E).", "E"),
        (f"{REASONING}\nThe answer is (A).\n...\nThe answer is (B).\n...\nthe answer is (C)", "C"),
        (f"{REASONING} The answer is (G) and (H).\n\nFinal Answer:\nThe answer is (F).", "F"),
        # a run that opens the reply, with no reasoning before it, is a list of answers to the
        # questions of a few-shot prompt (its examples, then the question asked): the last decides
        (
            "The answer is (A).\n\nThe answer is (H).\n\nThe answer is (E).\n\nThe answer is (I).\n\nThe answer is (G).",
            "G",
        ),
        ("Answer: B\nAnswer: H\nAnswer: D", "D"),
        # a loop read by its first answer even when the conclusion reasoned earlier said otherwise
        (f"{REASONING} The answer is (A). Then recheck: the answer is (D). The answer is (B). The answer is (J).", "D"),
    ],
)
def test_a_loop_of_conflicting_answers_reads_its_first_answer(text, letter):
    assert find_letter(text) == letter


def test_a_loop_that_began_before_the_tail_reads_its_first_answer():
    letters = "HFDAJ"
    loop = "".join(f"The answer is ({letters[i % 5]}).\n" for i in range(5 * (TAIL_CHARS // 50) + 2))
    text = f"{REASONING} The current ratio is 3. {loop}"
    assert len(text) > TAIL_CHARS + 2000 and loop.endswith("(F).\n")
    assert find_letter(text) == "H"


# ----------------------------------------------------------------------------- kept: markdown, "Final Answer", closest
@pytest.mark.parametrize(
    ("text", "letter"),
    [
        (f"{REASONING}\nThe answer is **A**.", "A"),
        (f"{REASONING}\n**The answer is (D)**", "D"),
        (f"{REASONING}\n\n**Answer: C**", "C"),
        (f"{REASONING}\n\n**Final Answer:** B", "B"),
        (f"{REASONING}\nFinal Answer: B", "B"),
        (f"{REASONING}\n\n## Final Answer\n\n**(E)**", "E"),
        (f"{REASONING}\n\nFinal Answer: The final answer is $\\boxed{{H}}$.", "H"),
        (f"{REASONING}\n\nFinal Answer:\nE. Investment falls", "E"),
        # "the closest option is X" and "the correct statement is X" commit to X
        (f"{REASONING} 0.07 m is not listed. The closest option is (B).", "B"),
        (f"{REASONING} None match exactly, but the closest is (I).", "I"),
        ("The correct statement is: B. They use a different transformation.", "B"),
        ("The statement that is not true is B. Expected frequencies can be decimals.", "B"),
    ],
)
def test_markdown_final_answer_and_closest_are_read(text, letter):
    assert find_letter(text) == letter
