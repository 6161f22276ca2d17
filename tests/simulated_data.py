"""Test support: a small answered dataset from the simulated world, built in process (no HTTP).

A simulated generator writes the questions and every simulated pool model answers them through the
same prompts and letter extraction as the HTTP path. Shared by the train/route tests and the gateway
tests (importable because pytest puts the directory of ``tests/conftest.py`` on ``sys.path``).
"""

from __future__ import annotations

import numpy as np

from cascal.data import ResponseMatrix
from cascal.generation.parser import parse_questions
from cascal.generation.prompt import build_messages as generation_messages
from cascal.llm.extract import extract_answer
from cascal.pipeline.answer import build_messages as answering_messages
from cascal.simulate import SUBJECTS, SimulatedResponder, SimWorld


def simulated_questions(
    world: SimWorld, n_subjects: int, per_subject: int, generator: str = "sim-generator-strong"
) -> tuple[list, list]:
    """Questions ``generator`` writes for the first ``n_subjects`` subjects, with their subjects."""
    responder = SimulatedResponder(world)
    questions, subjects = [], []
    for subject in SUBJECTS[:n_subjects]:
        for batch in range(per_subject // 20):
            reply = responder.reply(generator, generation_messages(subject.key, subject.description, 20, attempt=batch))
            parsed = parse_questions(reply.text)[0]
            questions += parsed
            subjects += [subject.key] * len(parsed)
    return questions, subjects


def simulated_responses(
    world: SimWorld, n_subjects: int, per_subject: int, generator: str = "sim-generator-strong"
) -> ResponseMatrix:
    """The pool's answers (and logprobs) on :func:`simulated_questions`, with the generator's key."""
    responder = SimulatedResponder(world)
    questions, subjects = simulated_questions(world, n_subjects, per_subject, generator)
    answers = np.empty((len(questions), world.n_models), dtype=np.int8)
    logprobs = np.empty(answers.shape, dtype=np.float32)
    for i, q in enumerate(questions):
        for j, model in enumerate(world.model_names):
            out = responder.reply(model, answering_messages(q.question, q.options))
            answers[i, j] = extract_answer(out.text, len(q.options))
            logprobs[i, j] = np.mean(out.token_logprobs)
    return ResponseMatrix(
        answers=answers,
        n_options=np.array([len(q.options) for q in questions]),
        subjects=np.array(subjects),
        model_names=world.model_names,
        gold=np.array([q.answer for q in questions]),
        logprobs=logprobs,
        question_ids=np.array([f"q{i}" for i in range(len(questions))]),
        questions=[q.question for q in questions],
        options=[list(q.options) for q in questions],
    )
