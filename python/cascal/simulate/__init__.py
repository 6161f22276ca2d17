"""A SIMULATED world of question generators and pool models, served over the OpenAI chat API.

It lets the whole Routing-with-Generated-Data pipeline (generate -> answer -> embed -> filter ->
train -> route -> evaluate) run offline, quickly and deterministically, with true answers known:

- :class:`SimWorld` — hidden true answers, niche specialists, generators of set key accuracy;
- :class:`SimulatedResponder` — the responder for :class:`cascal.simulate.chat_server.ChatServer`;
- :func:`serve_simulator` — start it on 127.0.0.1 (``cascal simulate`` does this from the shell).

No language model is involved: every name it serves starts with ``sim-``.
"""

from __future__ import annotations

from cascal.simulate.catalogue import SUBJECTS, SUBJECTS_BY_KEY, Niche, Subject
from cascal.simulate.responder import SimReply, SimulatedResponder, UnknownModelError, is_simulated
from cascal.simulate.server import serve_simulator, simulator_pool
from cascal.simulate.world import DEFAULT_GENERATORS, GeneratorProfile, ModelAnswer, SimWorld

__all__ = [
    "SimWorld",
    "GeneratorProfile",
    "ModelAnswer",
    "DEFAULT_GENERATORS",
    "SimulatedResponder",
    "SimReply",
    "UnknownModelError",
    "is_simulated",
    "serve_simulator",
    "simulator_pool",
    "SUBJECTS",
    "SUBJECTS_BY_KEY",
    "Subject",
    "Niche",
]
