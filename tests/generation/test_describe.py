"""The description prompt of ``cascal coverage --describe`` and the reading of its replies."""

from __future__ import annotations

import pytest

from cascal.errors import InvalidParameterError
from cascal.generation.describe import DESCRIBE_HEADER, build_describe_messages, parse_description, subject_name


def test_the_prompt_quotes_the_examples_and_names_to_avoid():
    system, user = build_describe_messages(["What is  a\ntort?", "  ", "x" * 1000], avoid_names=["law", "biology"])
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert text.startswith(DESCRIBE_HEADER)
    assert "- What is a tort?" in text and "- " + "x" * 400 + "\n" in text and "x" * 401 not in text
    assert "must differ from: law, biology" in text
    with pytest.raises(InvalidParameterError, match="at least one non-empty example"):
        build_describe_messages(["", "  "])


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            "Name: Tax Law\nDescription: Questions on income\n  tax rules.",
            ("tax_law", "Questions on income tax rules."),
        ),
        ("**Name:** torts\n**Description:** Civil wrongs.", ("torts", "Civil wrongs.")),
        ("Questions about the tax code.", (None, "Questions about the tax code.")),
        ("Name: !!!\nSomething about taxes.", (None, "Something about taxes.")),
        ("", (None, "")),
    ],
)
def test_replies_are_read_leniently(reply, expected):
    assert parse_description(reply) == expected


def test_subject_names_are_snake_case_and_bounded():
    assert subject_name("  Quantum Field-Theory (QFT) ") == "quantum_field_theory_qft"
    assert len(subject_name("word " * 40) or "") <= 48
    assert subject_name("??") is None
