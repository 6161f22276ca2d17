"""``model: "cascal-vote-K"``: ask the top K routed models and return the plurality answer (K is
read by :func:`cascal.serve.protocol.vote_size`).

Each reply's answer letter is read with :func:`cascal.llm.extract.extract_answer` (options A..T);
the plurality of the letters wins and ties go to the higher-ranked model
(:func:`cascal.pipeline.route.vote`). The returned completion is the reply of the highest-ranked
model that gave the winning letter (``model`` naming it), with a top-level ``cascal`` object holding
every asked model's letter::

    "cascal": {"vote": {"answer": "B", "votes": [{"model": "m1", "answer": "B"}, ...]}}

A model that fails or gives no letter votes ``null``; when no model gives a letter the best-ranked
reply is returned with ``"answer": null``.
"""

from __future__ import annotations

import asyncio
from typing import Optional, Sequence

from cascal.data import LETTERS
from cascal.serve.errors import APIError
from cascal.serve.upstream import Attempt, Forwarded, UpstreamPool

__all__ = ["ask_and_vote"]


def _letters(texts: Sequence[Optional[str]]) -> list[int]:
    from cascal.llm.extract import extract_answer

    return [extract_answer(t, len(LETTERS)) if t else -1 for t in texts]


async def ask_and_vote(pool: UpstreamPool, ranking: Sequence[str], body: dict, k: int) -> Forwarded:
    """Ask the first ``k`` healthy models of ``ranking`` at once and return the winning reply
    (``body`` is a whole-reply request: :func:`cascal.serve.protocol.parse_chat` refuses a streamed vote).

    Raises:
        APIError: 502 when no asked model answered.
    """
    names = pool.candidates(ranking)[:k]

    async def ask(name: str) -> Optional[Forwarded]:
        try:
            return await pool.complete([name], body, 1)
        except APIError:
            return None

    replies = await asyncio.gather(*(ask(n) for n in names))
    texts = [_reply_text(r.body) if r is not None else None for r in replies]
    choices = await asyncio.to_thread(_letters, texts)  # extraction off the event loop
    from cascal.pipeline.route import PoolAnswer, vote

    winner = vote([PoolAnswer(n, c, t or "") for n, c, t in zip(names, choices, texts)])
    answered = [(n, r, c) for n, r, c in zip(names, replies, choices) if r is not None]
    if not answered:
        raise APIError(
            502, f"no pool model could answer (asked {', '.join(names)})", "upstream_error", code="upstream_unavailable"
        )
    name, reply, _ = next(((n, r, c) for n, r, c in answered if c == winner and winner >= 0), answered[0])
    assert reply is not None
    votes = [{"model": n, "answer": LETTERS[c] if c >= 0 else None} for n, c in zip(names, choices)]
    body_out = dict(reply.body)
    body_out["cascal"] = {"vote": {"answer": LETTERS[winner] if winner >= 0 else None, "votes": votes}}
    attempts = [Attempt(n, None if r is not None else "failed") for n, r in zip(names, replies)]
    return Forwarded(body_out, name, attempts)


def _reply_text(body: dict) -> str:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""
