"""The generation prompt: asks a generator LLM for multiple-choice questions on one subject.

The reply format is the tagged block format parsed by :mod:`cascal.generation.parser`. The prompt of
attempt ``k`` names the attempt and lists a few stems already accepted for the subject, so every
attempt is a distinct request (a response cache keyed by the prompt then makes reruns free while
new attempts still get new questions), and the generator is steered away from repeating itself.
"""

from __future__ import annotations

from typing import Sequence

from cascal.data import LETTERS, MAX_OPTIONS
from cascal.errors import InvalidParameterError
from cascal.generation.parser import MIN_OPTIONS

#: Stems of already accepted questions quoted in a prompt, at most.
MAX_AVOID = 12
#: Characters kept of each quoted stem.
AVOID_CHARS = 160

SYSTEM_PROMPT = (
    "You write high-quality, self-contained multiple-choice exam questions. Each question has exactly "
    "one correct option. You follow the requested output format exactly."
)

_FORMAT = """Write each question in exactly this format, one block after another:

<question>
The question text. It may span several lines and use LaTeX.
</question>
<option>text of option A</option>
<option>text of option B</option>
<option>text of option C</option>
<option>text of option D</option>
<answer>B</answer>

Rules:
- Give {n_options} options per question, in order; do not put letters in front of them.
- The <answer> tag holds only the letter of the single correct option ({letters}).
- Every question must be answerable without any figure, table or outside document.
- Vary the topics, difficulty and the position of the correct answer.
- Output only the blocks: no numbering, no explanations."""


def build_messages(
    subject: str,
    description: str,
    n_questions: int,
    *,
    attempt: int = 0,
    n_options: int = 4,
    avoid: Sequence[str] = (),
) -> list[dict[str, str]]:
    """The chat messages that ask for ``n_questions`` questions on ``subject``.

    Args:
        subject: subject name (e.g. ``"organic_chemistry"``).
        description: the task description from tasks.yaml.
        n_questions: questions to ask for (>= 1).
        attempt: 0-based attempt number for this subject; written into the prompt.
        n_options: options per question to ask for (2..20).
        avoid: stems already accepted; the last :data:`MAX_AVOID` are quoted (truncated) as
            "do not repeat".

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidParameterError(f"subject: must be a non-empty string, got {subject!r}")
    if not isinstance(description, str) or not description.strip():
        raise InvalidParameterError(f"description: subject {subject!r} needs a non-empty description")
    if isinstance(n_questions, bool) or not isinstance(n_questions, int) or n_questions < 1:
        raise InvalidParameterError(f"n_questions: must be an integer >= 1, got {n_questions!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise InvalidParameterError(f"attempt: must be an integer >= 0, got {attempt!r}")
    if isinstance(n_options, bool) or not isinstance(n_options, int) or not MIN_OPTIONS <= n_options <= MAX_OPTIONS:
        raise InvalidParameterError(
            f"n_options: must be an integer in [{MIN_OPTIONS}, {MAX_OPTIONS}], got {n_options!r}"
        )

    letters = ", ".join(LETTERS[:n_options])
    parts = [
        f"Subject: {subject}",
        f"Description: {description.strip()}",
        "",
        f"Write {n_questions} new multiple-choice question{'s' if n_questions > 1 else ''} for this subject "
        f"(batch {attempt + 1}).",
        "",
        _FORMAT.format(n_options=n_options, letters=letters),
    ]
    recent = [" ".join(s.split()) for s in avoid][-MAX_AVOID:]
    if recent:
        parts += ["", "These questions already exist; do not repeat them or ask the same thing:"]
        parts += [f"- {s[:AVOID_CHARS]}{'...' if len(s) > AVOID_CHARS else ''}" for s in recent]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(parts)},
    ]
