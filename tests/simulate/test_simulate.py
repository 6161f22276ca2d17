"""The simulator: determinism, calibration of generators and pool models, prompt reading."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cascal.generation.parser import parse_questions
from cascal.generation.prompt import build_messages
from cascal.simulate import SUBJECTS, GeneratorProfile, SimulatedResponder, SimWorld, UnknownModelError
from cascal.simulate.catalogue import match_subject, recognise_niche
from cascal.simulate.questions import count_options, find_case, requested_counts

LETTERS = "ABCDEFGHIJKLMNOPQRST"
ANSWER = re.compile(r"The answer is \(([A-T])\)")


def generation_messages(subject_index: int, n: int, batch: int = 0, n_options: int = 5) -> list[dict]:
    subject = SUBJECTS[subject_index]
    return build_messages(subject.key, subject.description, n, attempt=batch, n_options=n_options)


def answering_prompt(question: str, options: tuple[str, ...]) -> list[dict]:
    lines = [f"Question: {question}", "Options:"] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    lines.append('Think step by step, then finish with "The answer is (X)" where X is a letter.')
    return [{"role": "user", "content": "\n".join(lines)}]


def generate(responder: SimulatedResponder, generator: str, subject_index: int, batches: int, n: int = 50):
    """Parsed questions of ``batches`` generation requests."""
    questions = []
    for b in range(batches):
        reply = responder.reply(generator, generation_messages(subject_index, n, b))
        parsed, report = parse_questions(reply.text)
        assert report.valid == n and report.n_skipped == 0
        questions += parsed
    return questions


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_replies_and_other_seed_differs():
    a, b, c = (
        SimulatedResponder(SimWorld(seed=3)),
        SimulatedResponder(SimWorld(seed=3)),
        SimulatedResponder(SimWorld(seed=4)),
    )
    msgs = generation_messages(0, 5)
    assert a.reply("sim-generator-weak", msgs).text == b.reply("sim-generator-weak", msgs).text
    assert a.reply("sim-generator-weak", msgs).text != c.reply("sim-generator-weak", msgs).text
    q = parse_questions(a.reply("sim-generator-weak", msgs).text)[0][0]
    prompt = answering_prompt(q.question, q.options)
    for model in a.world.model_names:
        assert a.reply(model, prompt) == b.reply(model, prompt)


def test_replies_do_not_depend_on_order_or_threads():
    responder = SimulatedResponder(SimWorld(seed=1))
    questions = generate(responder, "sim-generator-strong", 2, batches=1, n=30)
    jobs = [(m, answering_prompt(q.question, q.options)) for q in questions for m in responder.world.model_names]
    sequential = [responder.reply(m, p) for m, p in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        reversed_threaded = list(pool.map(lambda job: responder.reply(*job), jobs[::-1]))
    assert reversed_threaded[::-1] == sequential


def test_batches_of_one_subject_give_new_questions():
    responder = SimulatedResponder()
    first = {q.question for q in generate(responder, "sim-generator-weak", 0, batches=1, n=20)}
    second = parse_questions(responder.reply("sim-generator-weak", generation_messages(0, 20, batch=1)).text)[0]
    assert first.isdisjoint({q.question for q in second})


# ---------------------------------------------------------------------------- calibration
@pytest.mark.parametrize(
    "generator, accuracy",
    [
        ("sim-generator-strong", 0.90),
        ("sim-generator-medium", 0.70),
        ("sim-generator-weak", 0.45),
        ("sim-generator-oracle", 1.0),
    ],
)
def test_generator_key_accuracy_matches_its_strength(generator, accuracy):
    world = SimWorld(seed=7)
    responder = SimulatedResponder(world)
    questions = [q for s in range(len(SUBJECTS)) for q in generate(responder, generator, s, batches=4, n=50)]
    assert len(questions) == 1200
    right = [q.answer == world.truth(find_case(q.question), len(q.options)) for q in questions]
    # binomial standard error at n=1200 is <= 0.015; allow 3 of them
    assert abs(np.mean(right) - accuracy) < 0.045


def test_strong_generator_key_beats_weak_and_weak_errs_on_the_common_distractor():
    world = SimWorld(seed=2)
    responder = SimulatedResponder(world)
    weak = [q for s in range(3) for q in generate(responder, "sim-generator-weak", s, batches=4)]
    wrong = [q for q in weak if q.answer != world.truth(find_case(q.question), len(q.options))]
    on_distractor = np.mean([q.answer == world.distractor(find_case(q.question), len(q.options)) for q in wrong])
    assert on_distractor > 0.8  # profile: 0.9 plus chance hits


def _answers_by_niche(world: SimWorld, questions) -> dict:
    """{(model, niche key): list of 1/0 correctness} measured through the reply text."""
    responder = SimulatedResponder(world)
    out: dict = {}
    for q in questions:
        niche = recognise_niche(q.question)
        truth = world.truth(find_case(q.question), len(q.options))
        for model in world.model_names:
            text = responder.reply(model, answering_prompt(q.question, q.options)).text
            found = ANSWER.search(text)
            out.setdefault((model, niche), []).append(bool(found) and LETTERS.index(found.group(1)) == truth)
    return out


def test_pool_skill_follows_the_niche_specialists():
    world = SimWorld(seed=5)
    responder = SimulatedResponder(world)
    questions = [q for s in range(2) for q in generate(responder, "sim-generator-oracle", s, batches=6)]
    measured = _answers_by_niche(world, questions)
    for (model, niche), hits in measured.items():
        expected = world.skill(model, niche) * (1 - world.unparsable_rate)
        assert len(hits) > 60
        assert abs(np.mean(hits) - expected) < 4 * np.sqrt(0.25 / len(hits)), (model, niche)
    # every niche has a specialist far better than the niche's median model
    for s in range(2):
        for k in range(3):
            rates = sorted(np.mean(measured[(m, (s, k))]) for m in world.model_names)
            assert rates[-1] > 0.8 and rates[len(rates) // 2] < 0.6


def test_logprobs_are_higher_when_right_and_mean_matches_tokens():
    world = SimWorld(seed=9)
    responder = SimulatedResponder(world)
    questions = generate(responder, "sim-generator-oracle", 4, batches=4)
    for model in world.model_names:
        right, wrong = [], []
        for q in questions:
            reply = responder.reply(model, answering_prompt(q.question, q.options))
            assert len(reply.tokens) == len(reply.token_logprobs) and max(reply.token_logprobs) <= 0
            found = ANSWER.search(reply.text)
            truth = world.truth(find_case(q.question), len(q.options))
            (right if found and LETTERS.index(found.group(1)) == truth else wrong).append(np.mean(reply.token_logprobs))
        assert np.mean(right) > np.mean(wrong) + 0.2, model


def test_generated_words_belong_to_the_subject_asked_for():
    responder = SimulatedResponder()
    for s, subject in enumerate(SUBJECTS):
        questions = generate(responder, "sim-generator-strong", s, batches=1, n=20)
        assert {recognise_niche(q.question)[0] for q in questions} == {s}
        assert len({recognise_niche(q.question)[1] for q in questions}) == len(subject.niches)


# ---------------------------------------------------------------------------- prompt reading
def test_counts_read_from_generation_prompts():
    text = generation_messages(1, 17, n_options=7)[1]["content"]
    assert requested_counts(text) == (17, 7)
    assert requested_counts("Please write 3 questions with 12 options each") == (3, 12)
    assert requested_counts("no numbers here") == (5, 4)


@pytest.mark.parametrize(
    "listing, expected",
    [
        ("A. x\nB. y\nC. z", 3),
        ("(A) x\n(B) y\n(C) z\n(D) w", 4),
        ("A) x\nB) y", 2),
        ("[A] x\n[B] y\n[C] z\n\nAnswer with A, B or C.\nA. is not an option line", 3),
        ("no options at all", None),
        ("A. lone", None),
    ],
)
def test_option_counting(listing, expected):
    assert count_options("Question: Case 1234567: what?\n" + listing) == expected


def test_case_and_subject_recognition():
    assert find_case("Q: Case 1234567: why?\nCase 7654321: and this?") == "7654321"
    assert find_case("Case 12345: too short") is None
    assert match_subject("Subject: law\nDescription: contracts and criminal law").key == "law"
    assert match_subject("entirely unrelated words") in SUBJECTS  # stable fallback, never an error
    assert recognise_niche("nothing topical") is None


def test_unknown_model_and_bad_world_parameters_raise():
    with pytest.raises(UnknownModelError, match="gpt-4"):
        SimulatedResponder().reply("gpt-4", [{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="messages"):
        SimulatedResponder().reply("sim-model-1", [])
    with pytest.raises(ValueError, match="n_models"):
        SimWorld(n_models=2)
    with pytest.raises(ValueError, match="specialist_skill"):
        SimWorld(specialist_skill=1.5)
    with pytest.raises(ValueError, match="key_accuracy"):
        GeneratorProfile("sim-generator-x", 1.2, 0.5)
    with pytest.raises(ValueError, match="name"):
        GeneratorProfile("gpt-x", 0.5, 0.5)
    with pytest.raises(ValueError, match="generator"):
        SimWorld().generator_key("sim-generator-none", "c", 4)


def test_free_text_questions_get_a_stable_answer():
    responder = SimulatedResponder()
    msgs = [{"role": "user", "content": "Which enzyme unwinds DNA?\nA. helicase\nB. ligase\nC. primase"}]
    first = responder.reply("sim-model-2", msgs)
    assert first == responder.reply("sim-model-2", msgs)
    assert ANSWER.search(first.text) is None or ANSWER.search(first.text).group(1) in "ABC"


# ---------------------------------------------------------------------------- over HTTP
def test_served_replies_equal_the_responder_through_the_openai_client():
    import asyncio

    from cascal.llm.client import ChatClient
    from cascal.pipeline.answer import build_messages as answering_messages
    from cascal.simulate import serve_simulator, simulator_pool

    world = SimWorld(seed=4)
    responder = SimulatedResponder(world)
    q = generate(responder, "sim-generator-oracle", 3, batches=1, n=3)[0]
    messages = answering_messages(q.question, q.options)
    with serve_simulator(world) as server:
        pool = simulator_pool(server.base_url, world)

        async def ask(name: str):
            async with ChatClient(pool.get(name), pool.retry) as client:
                return await client.complete(messages)

        for name in world.model_names:
            completion = asyncio.run(ask(name))
            direct = responder.reply(name, messages)
            assert completion.text == direct.text
            assert completion.mean_logprob == pytest.approx(np.mean(direct.token_logprobs), abs=1e-9)
        assert sorted(m for m, _ in server.request_log) == sorted(world.model_names)


def test_cascal_simulate_serves_standalone_and_writes_pool_files(tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request

    from cascal.llm.config import load_pool

    pool_file, gen_file = tmp_path / "pool.yaml", tmp_path / "generators.yaml"
    cmd = [
        sys.executable,
        "-m",
        "cascal",
        "simulate",
        "--port",
        "0",
        "--seed",
        "2",
        "--write-pool",
        str(pool_file),
        "--write-generators",
        str(gen_file),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()
        match = re.search(r"SIMULATED LLM server on (http://127\.0\.0\.1:\d+/v1)", first)
        assert match, first
        url = match.group(1)
        with urllib.request.urlopen(url + "/models", timeout=10) as resp:
            listed = {m["id"] for m in __import__("json").load(resp)["data"]}
        world = SimWorld(seed=2)
        assert listed == set(world.model_names) | set(world.generator_names)
        pool, generators = load_pool(pool_file), load_pool(gen_file)
        assert pool.names == world.model_names and generators.names == world.generator_names
        assert {m.base_url for m in pool.models} == {url}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(case=st.text(min_size=1, max_size=12), n_options=st.integers(2, 20), seed=st.integers(0, 3))
def test_truth_distractor_and_answers_stay_in_range(case, n_options, seed):
    world = SimWorld(seed=seed)
    truth = world.truth(case, n_options)
    assert 0 <= truth < n_options
    assert world.distractor(case, n_options) != truth
    for generator in world.generator_names:
        assert 0 <= world.generator_key(generator, case, n_options) < n_options
    for model in world.model_names:
        answer = world.answer(model, case, n_options, (0, 1))
        assert -1 <= answer.choice < n_options
        assert answer.correct == (answer.choice == truth)
        assert answer.mean_logprob < 0


def test_bad_option_counts_raise():
    world = SimWorld()
    for bad in (1, 21, 4.0, True):
        with pytest.raises(ValueError, match="n_options"):
            world.truth("c", bad)
