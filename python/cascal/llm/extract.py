"""Extract the chosen option letter from a model's free-text reply.

The prompt asks for reasoning followed by ``The answer is (X)``. Replies drift from that, so the
extraction tries, in order, and the first rule that finds a letter decides:

1. the *last* ``answer is (X)`` / ``answer is X`` (also ``answer is: X``, ``answer would be X``,
   ``\\boxed{X}`` and other LaTeX or markdown wrapping, lowercase ``(x)``);
2. the last ``Answer: X`` / ``Final answer - (X)``;
3. the last ``\\boxed{X}`` anywhere;
4. a lone letter or ``(X)`` (optionally with a period) as the reply's final line.

A letter beyond the question's options (``(K)`` for a 4-option question) makes the reply
unparsable (``-1``): no later rule is consulted, because the model did commit to an answer.
"""

from __future__ import annotations

import re
from typing import Optional

from cascal.data import LETTERS, MAX_OPTIONS, NO_ANSWER
from cascal.errors import InvalidParameterError

# LaTeX / markdown wrappers that may surround the letter: removed before matching.
_WRAPPER = re.compile(
    r"\\(?:boxed|text|textbf|textit|mathrm|mathbf|mathit|emph|fbox|bf|it)\s*\{"  # \boxed{ \text{ ...
    r"|\\[()\[\]]"  # \( \) \[ \]
    r"|[$*`{}_#]"  # $ ** ` { } _ #
)
_SPACES = re.compile(r"[ \t]+")

# an upper-case letter, or a lower-case one only when parenthesised (so "the answer is a bit ..." is no answer)
_LETTER = r"(?:\(\s*(?P<p>[A-Za-z])\s*\)|\[\s*(?P<b>[A-Za-z])\s*\]|(?P<u>[A-Z])(?![A-Za-z0-9])|(?P<l>[a-z])(?=\s*(?:[.)]?\s*$|[.)]\s)))"

# the phrase is case-insensitive, the letter is not (see _LETTER)
_ANSWER_IS = re.compile(
    r"(?i:answer\s+(?:is|would\s+be|will\s+be|should\s+be)\s*(?:option\s+|choice\s+)?[:\-]?\s*)" + _LETTER,
    re.MULTILINE,
)
_ANSWER_COLON = re.compile(r"(?i:answer\s*[:\-]\s*(?:option\s+|choice\s+)?)" + _LETTER, re.MULTILINE)
_BOXED = re.compile(r"\\boxed\s*\{\s*(?:\\text\s*\{\s*)?\(?\s*(?P<u>[A-Za-z])\s*\)?\s*\}")
_FINAL_LINE = re.compile(r"^\s*(?:\(\s*(?P<p>[A-Za-z])\s*\)|(?P<u>[A-Z]))\s*[.)]?\s*$")


def normalize(text: str) -> str:
    """Strip LaTeX/markdown wrappers and squeeze spaces (newlines are kept)."""
    return _SPACES.sub(" ", _WRAPPER.sub(" ", text))


def _letter_of(match: "re.Match[str]") -> str:
    for group in ("p", "b", "u", "l"):
        value = match.groupdict().get(group)
        if value:
            return value.upper()
    raise AssertionError("pattern matched without a letter group")  # pragma: no cover


def find_letter(text: str) -> Optional[str]:
    """The answer letter the reply commits to (upper case), or ``None`` when it names none."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    boxed = list(_BOXED.finditer(text))
    flat = normalize(text)
    for pattern in (_ANSWER_IS, _ANSWER_COLON):
        matches = list(pattern.finditer(flat))
        if matches:
            return _letter_of(matches[-1])
    if boxed:
        return boxed[-1].group("u").upper()
    lines = [line for line in flat.splitlines() if line.strip()]
    if lines:
        last = _FINAL_LINE.match(lines[-1])
        if last:
            return _letter_of(last)
    return None


def extract_answer(text: str, n_options: int) -> int:
    """The option index (0 = A) the reply chose, or ``NO_ANSWER`` (-1) when none is found or the
    letter is beyond the question's ``n_options``.

    Raises:
        ValueError: ``n_options`` outside 2..20.
    """
    if isinstance(n_options, bool) or not isinstance(n_options, int) or not 2 <= n_options <= MAX_OPTIONS:
        raise InvalidParameterError(f"n_options: expected an integer in 2..{MAX_OPTIONS}, got {n_options!r}")
    letter = find_letter(text)
    if letter is None:
        return NO_ANSWER
    index = LETTERS.find(letter)
    if index < 0 or index >= n_options:
        return NO_ANSWER
    return index


__all__ = ["extract_answer", "find_letter", "normalize"]
