"""The description prompt: asks a generator LLM to name and describe a group of example questions.

``cascal coverage --describe`` sends one such prompt per cluster of uncovered traffic; the reply
becomes that cluster's entry of the ``tasks.yaml`` draft, the same kind of one-paragraph subject
description ``cascal generate`` reads. The reply format is two labelled lines::

    Name: short_snake_case_name
    Description: one paragraph describing the kind of questions.

:func:`parse_description` reads it leniently (a reply without labels is taken whole as the
description).
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from cascal.errors import InvalidParameterError

__all__ = ["DESCRIBE_HEADER", "build_describe_messages", "parse_description", "subject_name"]

#: The line that opens every description prompt (a simulated generator recognises the request by it).
DESCRIBE_HEADER = "Describe the kind of questions in these examples as a subject for an exam question generator."
#: Characters kept of each quoted example.
EXAMPLE_CHARS = 400

_LABEL = re.compile(r"^\s*\**\s*(name|description)\s*\**\s*:\s*\**\s*(.*)$", re.I)


def build_describe_messages(examples: Sequence[str], *, avoid_names: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat messages that ask for a name and a description of ``examples``.

    Args:
        examples: example questions (at least one); each is quoted up to :data:`EXAMPLE_CHARS`.
        avoid_names: subject names already taken (the router's subjects), which the name must not repeat.
    """
    quoted = [" ".join(str(e).split())[:EXAMPLE_CHARS] for e in examples if str(e).strip()]
    if not quoted:
        raise InvalidParameterError("examples: a description needs at least one non-empty example question")
    parts = [DESCRIBE_HEADER, "", "Example questions:"]
    parts += [f"- {q}" for q in quoted]
    parts += [
        "",
        "Reply with exactly two lines:",
        "Name: a short snake_case name for this subject",
        "Description: one paragraph saying what these questions are about, specific enough to write "
        "many more questions of the same kind.",
    ]
    if avoid_names:
        parts += ["", "The name must differ from: " + ", ".join(avoid_names)]
    return [
        {"role": "system", "content": "You describe groups of exam questions precisely and briefly."},
        {"role": "user", "content": "\n".join(parts)},
    ]


def subject_name(text: str) -> Optional[str]:
    """``text`` as a snake_case subject name (letters, digits, underscores; at most 48 characters),
    or ``None`` when nothing usable is left."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48].strip("_")
    return name or None


def parse_description(text: str) -> tuple[Optional[str], str]:
    """``(name or None, description)`` of a reply to :func:`build_describe_messages`; the
    description is whitespace-normalised (empty when the reply is empty)."""
    name: Optional[str] = None
    description: list[str] = []
    unlabelled: list[str] = []
    in_description = False
    for line in text.splitlines():
        match = _LABEL.match(line)
        if match and match.group(1).lower() == "name":
            name = name or subject_name(match.group(2))
            in_description = False
        elif match:
            description.append(match.group(2))
            in_description = True
        else:
            (description if in_description else unlabelled).append(line)
    return name, " ".join(" ".join(description or unlabelled).split())
