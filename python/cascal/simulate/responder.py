"""The simulator as a chat responder: generators write questions, pool models answer them.

:class:`SimulatedResponder` plugs into :class:`cascal.simulate.chat_server.ChatServer`; requests are routed by
model name: ``sim-generator-*`` models read a generation prompt (subject description, number of
questions and options) and reply with tagged question blocks, or read a description request
(:mod:`cascal.generation.describe`: example questions) and name the catalogue subject the examples'
words point at; ``sim-model-*`` models read an
answering prompt (a simulated question with lettered options), reply with one line of reasoning and
``The answer is (X)``, and attach token logprobs. Every reply is a pure function of the world seed and
the request, so it is identical across runs, orders and threads.

All of it is SIMULATED: no language model is involved anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from cascal.data import LETTERS
from cascal.errors import InvalidParameterError, UnknownModelError
from cascal.generation.describe import DESCRIBE_HEADER
from cascal.simulate.catalogue import SUBJECTS, match_subject, recognise_niche
from cascal.simulate.hashing import stable_int, stable_rng
from cascal.simulate.questions import (
    count_options,
    find_case,
    format_blocks,
    requested_counts,
    subject_text,
    write_question,
)
from cascal.simulate.world import GENERATOR_PREFIX, MODEL_PREFIX, SimWorld

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class SimReply:
    """A simulated reply: text, its tokens and their logprobs (``None`` for generators)."""

    text: str
    tokens: Optional[list[str]] = None
    token_logprobs: Optional[list[float]] = None


def _message_text(messages: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, list):  # OpenAI content parts
            content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        parts.append(str(content))
    return "\n".join(parts)


def _user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    user = [m for m in messages if m.get("role") == "user"]
    return _message_text(user or messages)


class SimulatedResponder:
    """Serves a :class:`SimWorld`'s generators and pool models.

    Args:
        world: the simulated world (a default one with ``seed=0`` when omitted).

    Call it with a request (anything with ``model``, ``messages`` and ``params`` attributes, such as
    :class:`cascal.simulate.chat_server.ChatRequest`) to get a :class:`cascal.simulate.chat_server.ChatReply`, or use
    :meth:`reply` for the plain :class:`SimReply`.
    """

    def __init__(self, world: Optional[SimWorld] = None) -> None:
        self.world = world if world is not None else SimWorld()

    @property
    def model_names(self) -> list[str]:
        """Every model this responder serves: generators first, then the pool."""
        return self.world.generator_names + self.world.model_names

    def reply(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Optional[Mapping[str, Any]] = None
    ) -> SimReply:
        """The simulated reply of ``model`` to ``messages``; :class:`UnknownModelError` for a model
        that is neither a simulated generator nor a simulated pool model."""
        if not messages:
            raise InvalidParameterError("messages: a chat request needs at least one message")
        params = dict(params or {})
        if model in self.world.generator_names:
            return self._generate(model, messages, params)
        if model in self.world.model_names:
            return self._answer(model, messages)
        raise UnknownModelError(f"model: {model!r} is not served by the simulator; known: {self.model_names}")

    def __call__(self, request: Any) -> Any:
        from cascal.simulate.chat_server import ChatReply

        out = self.reply(request.model, request.messages, getattr(request, "params", None))
        return ChatReply(text=out.text, token_logprobs=out.token_logprobs, tokens=out.tokens)

    # ------------------------------------------------------------------ generators
    def _generate(self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> SimReply:
        prompt = _user_text(messages)
        if DESCRIBE_HEADER in prompt:
            return self._describe(prompt)
        subject = match_subject(subject_text(prompt))
        n_questions, n_options = requested_counts(prompt)
        request_id = stable_int("request", _message_text(messages), params.get("seed"))
        questions = [write_question(self.world, subject, n_options, model, request_id, i) for i in range(n_questions)]
        keys = [self.world.generator_key(model, q.case, n_options) for q in questions]
        return SimReply(text=format_blocks(questions, keys))

    @staticmethod
    def _describe(prompt: str) -> SimReply:
        """A description request (:mod:`cascal.generation.describe`): the catalogue subject whose
        words dominate the examples, named by its key and described by its own description."""
        subject = match_subject(prompt.split(DESCRIBE_HEADER, 1)[1].split("Reply with", 1)[0])
        return SimReply(text=f"Name: {subject.key}\nDescription: {subject.description}")

    # ------------------------------------------------------------------ pool models
    def _answer(self, model: str, messages: Sequence[Mapping[str, Any]]) -> SimReply:
        prompt = _user_text(messages)
        case = find_case(prompt) or f"text-{stable_int('free-text', prompt)}"
        n_options = count_options(prompt) or 4
        niche = recognise_niche(prompt)
        answer = self.world.answer(model, case, n_options, niche)
        topic = "the question" if niche is None else SUBJECTS[niche[0]].niches[niche[1]].name
        if answer.choice < 0:
            text = f"This {topic} question is ambiguous to me; I cannot commit to a single option."
        else:
            text = f"Weighing the options against what I know of {topic}, one stands out. The answer is ({LETTERS[answer.choice]})."
        tokens = _TOKEN.findall(text)
        # per-token logprobs whose mean is exactly the simulated mean logprob (all <= 0)
        shares = stable_rng("tokens", self.world.seed, model, case).dirichlet([2.0] * len(tokens)) * len(tokens)
        token_logprobs = [float(answer.mean_logprob * s) for s in shares]
        return SimReply(text=text, tokens=tokens, token_logprobs=token_logprobs)


def is_simulated(model: str) -> bool:
    """Whether ``model`` names a simulated generator or pool model."""
    return model.startswith((GENERATOR_PREFIX, MODEL_PREFIX))
