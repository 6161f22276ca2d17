"""Answering a dataset folder with a pool: outputs, faults, unreachable endpoints, kill and resume."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cascal.cli import main
from cascal.data import LETTERS, NO_ANSWER, NOT_ASKED
from cascal.io import load_dataset, save_dataset
from cascal.kernels.consensus import consensus_scores
from cascal.llm.cache import ResponseCache
from cascal.llm.client import EndpointError
from cascal.llm.config import ModelConfig, PoolConfig, RetryPolicy
from cascal.pipeline.answer import answer_dataset, build_messages
from cascal.simulate.chat_server import FAULT_KINDS, ChatReply, ChatRequest, ChatServer, Fault, prompt_hash

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02, jitter=0.0, reask_unparsable=1)
REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- a small world
def make_dataset(folder: Path, n: int = 12, seed: int = 0) -> tuple[list[int], list[int]]:
    """A dataset folder of ``n`` questions with 2..10 options; returns (gold, n_options)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gold, n_opts = [], []
    with open(folder / "questions.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            k = int(rng.integers(2, 11))
            g = int(rng.integers(0, k))
            gold.append(g)
            n_opts.append(k)
            rec = {
                "question_id": 100 + i,
                "category": ["law", "math"][i % 2],
                "question": f"Question number {i}: which option is right? Use $x^2$ and {{braces}}.",
                "options": [f"option {j} of {i}" for j in range(k)],
                "answer": LETTERS[g],
            }
            fh.write(json.dumps(rec) + "\n")
    return gold, n_opts


class World:
    """Deterministic pool behaviour keyed on the question number found in the prompt.

    good: "The answer is (gold)", logprobs [-0.1, -0.2, -0.3]
    shifted: "the answer is <next letter, lowercase>.", logprobs [-1.0, -2.0]
    mute: never names a letter (always unparsable)
    plain: "Answer: <gold>" without logprobs
    """

    def __init__(self, gold: list[int], n_options: list[int], delay: float = 0.0) -> None:
        self.gold, self.n_options, self.delay = gold, n_options, delay

    def question(self, req: ChatRequest) -> int:
        match = re.search(r"Question number (\d+):", req.messages[-1]["content"])
        assert match, "prompt lost the question text"
        return int(match.group(1))

    def __call__(self, req: ChatRequest) -> ChatReply:
        if self.delay:
            time.sleep(self.delay)
        q = self.question(req)
        g, k = self.gold[q], self.n_options[q]
        if req.model == "id-good":
            return ChatReply(f"Reasoning about {q}. The answer is ({LETTERS[g]}).", token_logprobs=[-0.1, -0.2, -0.3])
        if req.model == "id-shifted":
            return ChatReply(f"hmm. the answer is {LETTERS[(g + 1) % k].lower()}.", token_logprobs=[-1.0, -2.0])
        if req.model == "id-mute":
            return ChatReply("I cannot decide between them.", token_logprobs=[-3.0])
        if req.model == "id-plain":
            return ChatReply(f"Answer: {LETTERS[g]}")
        raise AssertionError(f"unexpected model {req.model}")


def pool_for(server: ChatServer, names=("good", "shifted", "mute", "plain"), **kw) -> PoolConfig:
    models = tuple(
        ModelConfig(
            name=n,
            base_url=server.base_url,
            model=f"id-{n}",
            timeout=2.0,
            stream=(n == "plain"),
            max_concurrency=4,
            **kw,
        )
        for n in names
    )
    return PoolConfig(models, retry=FAST)


def counts(log: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for entry in log:
        out[entry] = out.get(entry, 0) + 1
    return out


# ----------------------------------------------------------------------------- prompts
def test_prompt_lists_lettered_options_and_asks_for_the_answer_format():
    [msg] = build_messages("  What is 1+1?  ", ["1", "2", "3"])
    assert msg["role"] == "user"
    text = msg["content"]
    assert "Question: What is 1+1?" in text
    assert "(A) 1\n(B) 2\n(C) 3" in text
    assert "The answer is (X)" in text
    with pytest.raises(ValueError, match="options"):
        build_messages("q", ["only one"])
    with pytest.raises(ValueError, match="question"):
        build_messages("  ", ["a", "b"])


# ----------------------------------------------------------------------------- outputs
def test_answer_dataset_writes_letters_logprobs_and_tokens(tmp_path):
    gold, n_opts = make_dataset(tmp_path / "ds")
    world = World(gold, n_opts)
    with ChatServer(world) as server:
        result = answer_dataset(tmp_path / "ds", pool_for(server), progress=False)
        log = server.request_log
    n = len(gold)
    g = np.array(gold)
    k = np.array(n_opts)
    on_disk = load_dataset(tmp_path / "ds", embeddings=None)
    for rm in (result, on_disk):
        assert rm.model_names == ["good", "shifted", "mute", "plain"]
        np.testing.assert_array_equal(rm.answers[:, 0], g)
        np.testing.assert_array_equal(rm.answers[:, 1], (g + 1) % k)
        np.testing.assert_array_equal(rm.answers[:, 2], np.full(n, NO_ANSWER))
        np.testing.assert_array_equal(rm.answers[:, 3], g)
        np.testing.assert_allclose(rm.logprobs[:, 0], -0.2, rtol=1e-6)
        np.testing.assert_allclose(rm.logprobs[:, 1], -1.5, rtol=1e-6)
        np.testing.assert_allclose(rm.logprobs[:, 2], -3.0, rtol=1e-6)
        assert np.isnan(rm.logprobs[:, 3]).all()
        # completion tokens; the mute model was asked twice (1 re-ask), both replies are paid for
        np.testing.assert_array_equal(rm.cost[:, 0], 3)
        np.testing.assert_array_equal(rm.cost[:, 1], 2)
        np.testing.assert_array_equal(rm.cost[:, 2], 2)
        np.testing.assert_array_equal(rm.cost[:, 3], [len(f"Answer: {LETTERS[x]}".split(" ")) for x in gold])
    assert result.extra["answering"]["mute"] == {
        "cached": 0,
        "requests_sent": 2 * n,
        "answered": 0,
        "unparsable": n,
        "missing": 0,
    }
    assert result.extra["answering"]["good"]["answered"] == n
    per_model = {m: sum(1 for mm, _ in log if mm == m) for m in ("id-good", "id-shifted", "id-mute", "id-plain")}
    assert per_model == {"id-good": n, "id-shifted": n, "id-mute": 2 * n, "id-plain": n}
    # the question file is untouched in content
    assert [q["question"] for q in map(json.loads, (tmp_path / "ds" / "questions.jsonl").read_text().splitlines())][
        0
    ].startswith("Question number 0")


def test_second_run_is_served_from_the_cache(tmp_path):
    gold, n_opts = make_dataset(tmp_path / "ds")
    with ChatServer(World(gold, n_opts)) as server:
        first = answer_dataset(tmp_path / "ds", pool_for(server), progress=False)
        sent = len(server.request_log)
        second = answer_dataset(tmp_path / "ds", pool_for(server), progress=False)
        assert len(server.request_log) == sent
    np.testing.assert_array_equal(first.answers, second.answers)
    np.testing.assert_array_equal(first.cost, second.cost)
    assert all(s["requests_sent"] == 0 for s in second.extra["answering"].values())
    assert second.extra["answering"]["mute"]["cached"] == 2 * len(gold)


def test_other_models_columns_are_kept_and_rerun_columns_replaced(tmp_path):
    gold, n_opts = make_dataset(tmp_path / "ds", n=6)
    before = load_dataset(tmp_path / "ds", embeddings=None)
    old = np.array([[0, 0]] * 6, dtype=np.int8)
    old[2, 1] = NO_ANSWER
    prior = before.__class__(
        answers=old,
        n_options=before.n_options,
        subjects=before.subjects,
        model_names=["legacy", "good"],
        gold=before.gold,
        logprobs=np.full((6, 2), -9.0),
        cost=np.full((6, 2), 99.0),
        question_ids=before.question_ids,
        questions=before.questions,
        options=before.options,
        extra=before.extra,
    )
    save_dataset(prior, tmp_path / "ds")
    with ChatServer(World(gold, n_opts)) as server:
        result = answer_dataset(tmp_path / "ds", pool_for(server, names=("good", "plain")), progress=False)
    assert result.model_names == ["legacy", "good", "plain"]
    np.testing.assert_array_equal(result.answers[:, 0], 0)
    np.testing.assert_array_equal(result.cost[:, 0], 99.0)
    np.testing.assert_array_equal(result.answers[:, 1], gold)  # "good" was re-answered
    np.testing.assert_allclose(result.logprobs[:, 1], -0.2, rtol=1e-6)


def test_models_subset_and_concurrency_override(tmp_path):
    gold, n_opts = make_dataset(tmp_path / "ds", n=4)
    with ChatServer(World(gold, n_opts)) as server:
        result = answer_dataset(tmp_path / "ds", pool_for(server), models=["plain"], concurrency=1, progress=False)
        assert {m for m, _ in server.request_log} == {"id-plain"}
    assert result.model_names == ["plain"]
    with pytest.raises(ValueError, match="concurrency"):
        answer_dataset(tmp_path / "ds", pool_for(server), concurrency=0, progress=False)


def test_works_when_called_from_a_running_event_loop(tmp_path):
    """As in a notebook: answer_dataset is called while an event loop runs in this thread."""
    gold, n_opts = make_dataset(tmp_path / "ds", n=4)
    with ChatServer(World(gold, n_opts)) as server:

        async def inside_a_loop():
            return answer_dataset(tmp_path / "ds", pool_for(server, names=("good",)), progress=False)

        result = asyncio.run(inside_a_loop())
    np.testing.assert_array_equal(result.answers[:, 0], gold)


# ----------------------------------------------------------------------------- a misbehaving server
FAULTS_BY_KIND = {
    "http_500": Fault.http_500(),
    "rate_limit": Fault.rate_limit(0.05),
    "timeout": Fault.timeout(3.0),
    "truncated": Fault.truncated(),
    "malformed_json": Fault.malformed_json(),
    "empty_choices": Fault.empty_choices(),
    "slow_stream": Fault.slow_stream(0.01),
    "trickle": Fault.trickle(0.05),
    "giant_body": Fault.giant_body(20 * 2**20),
    "deep_json": Fault.deep_json(200_000),
    "wrong_shape": Fault.wrong_shape(),
    "bad_usage": Fault.bad_usage(completion_tokens=-(10**23), prompt_tokens="many"),
    "reset": Fault.reset(),
    "raw_body": Fault.raw_body(b'{"choices": {"message": "not a list"}}'),
}
#: kinds after which the same request is accepted (no retry)
ACCEPTED_KINDS = {"slow_stream", "bad_usage"}


@pytest.mark.filterwarnings("ignore::cascal.llm.cache.ReplyWarning")  # the bad_usage fault warns by design
def test_run_completes_through_every_fault_kind(tmp_path):
    """Every fault kind of the test server, plain and streamed, on the first request of a prompt: the
    run completes, each failed attempt is retried once, a reply with absurd usage numbers is kept
    (its cost unknown), and a prompt whose requests always fail is missing, not '?'."""
    assert set(FAULTS_BY_KIND) == set(FAULT_KINDS)
    kinds = list(FAULT_KINDS)
    n = 2 * len(kinds)
    gold, n_opts = make_dataset(tmp_path / "ds", n=n)
    world = World(gold, n_opts)
    doomed = 5  # this question's "good" requests always fail

    def faults(req: ChatRequest):
        q = world.question(req)
        if req.model == "id-good" and q == doomed:
            return Fault.http_500()
        if req.attempt == 0 and q % 2 == 0:  # half the prompts meet a fault on their first request
            return FAULTS_BY_KIND[kinds[q // 2]]
        return None

    with ChatServer(world, faults=faults) as server:
        pool = pool_for(server, names=("good", "plain"))
        # generous against a loaded machine, still well short of the 3 s stall; the deadline ends a
        # trickle (one byte each 0.05 s) that the idle timeout never would
        pool = PoolConfig(
            tuple(ModelConfig(**{**m.__dict__, "timeout": 1.5, "request_deadline": 2.0}) for m in pool.models),
            retry=FAST,
        )
        start = time.monotonic()
        result = answer_dataset(tmp_path / "ds", pool, progress=False)
        elapsed = time.monotonic() - start
        log = server.requests
    expected = np.array(gold)
    expected_good = expected.copy()
    expected_good[doomed] = NOT_ASKED  # a persistent failure is missing: no vote, asked again next run
    np.testing.assert_array_equal(result.answers[:, 0], expected_good)
    np.testing.assert_array_equal(result.answers[:, 1], expected)
    assert math.isnan(result.logprobs[doomed, 0]) and math.isnan(result.cost[doomed, 0])
    assert result.extra["answering"]["good"]["missing"] == 1 and result.extra["answering"]["plain"]["missing"] == 0
    bad_usage_q = 2 * kinds.index("bad_usage")
    assert np.isnan(result.cost[bad_usage_q]).all()  # the absurd count was dropped, the reply kept
    # retried requests, counted from the server's log
    per_prompt = counts([(r.model, r.prompt_hash) for r in log])
    for model in ("id-good", "id-plain"):
        for q in range(n):
            key = (model, prompt_hash(build_messages(*_question(tmp_path / "ds", q))))
            faulted_first = q % 2 == 0 and kinds[q // 2] not in ACCEPTED_KINDS
            if model == "id-good" and q == doomed:
                assert per_prompt[key] == FAST.max_attempts
            else:
                assert per_prompt[key] == (2 if faulted_first else 1), (model, q)
    assert {r.fault for r in log} >= set(FAULT_KINDS)
    assert elapsed < 30


def test_an_outage_is_missing_not_a_wrong_answer_and_a_rerun_asks_only_those(tmp_path):
    """While the server answers HTTP 500 to some prompts, those cells are left empty (not '?'), the
    consensus gives them no score (it would give '?' a 0), the stats count them per model; the rerun
    asks exactly those prompts and nothing else."""
    n = 10
    gold, n_opts = make_dataset(tmp_path / "ds", n=n)
    world = World(gold, n_opts)
    down = {"id-good": {1, 4, 7}, "id-plain": {4}}
    outage = {"on": True}

    def faults(req: ChatRequest):
        return Fault.http_500() if outage["on"] and world.question(req) in down[req.model] else None

    with ChatServer(world, faults=faults) as server:
        pool = pool_for(server, names=("good", "plain"))
        first = answer_dataset(tmp_path / "ds", pool, progress=False)
        on_disk = load_dataset(tmp_path / "ds", embeddings=None)
        sent_first = len(server.request_log)
        outage["on"] = False
        second = answer_dataset(tmp_path / "ds", pool, progress=False)
        rerun_log = server.request_log[sent_first:]
    g = np.array(gold)
    for col, model in enumerate(("id-good", "id-plain")):
        rows = sorted(down[model])
        expected = g.copy()
        expected[rows] = NOT_ASKED
        np.testing.assert_array_equal(first.answers[:, col], expected)
        assert np.isnan(first.logprobs[rows, col]).all() and np.isnan(first.cost[rows, col]).all()
    assert first.extra["answering"]["good"]["missing"] == 3 and first.extra["answering"]["plain"]["missing"] == 1
    assert first.extra["answering"]["good"]["answered"] == 7
    np.testing.assert_array_equal(on_disk.answers, first.answers)  # written as empty cells
    scores = consensus_scores(first.answers, first.n_options, first.logprobs).scores
    assert np.isnan(scores[sorted(down["id-good"]), 0]).all()  # no vote, no score: not a 0
    assert np.isfinite(scores[[0, 2, 3], 0]).all()
    # the rerun sent exactly the failed prompts, each once, and filled them in
    failed = {(m, prompt_hash(build_messages(*_question(tmp_path / "ds", q)))) for m, qs in down.items() for q in qs}
    assert sorted(rerun_log) == sorted(failed)
    np.testing.assert_array_equal(second.answers, np.stack([g, g], axis=1))
    assert all(s["missing"] == 0 for s in second.extra["answering"].values())
    assert second.extra["answering"]["good"]["cached"] == 7 and second.extra["answering"]["good"]["requests_sent"] == 3


def test_a_failed_reask_leaves_the_answer_missing(tmp_path):
    """An unparsable first reply whose re-ask then fails is not recorded as '?': the question is
    missing and the next run asks the re-ask again (the first reply comes from the cache)."""
    gold, n_opts = make_dataset(tmp_path / "ds", n=3)
    outage = {"on": True}

    def faults(req: ChatRequest):
        return Fault.http_500() if outage["on"] and req.attempt >= 1 else None  # every re-ask fails

    def first_unparsable(req: ChatRequest) -> ChatReply:
        q = int(re.search(r"Question number (\d+):", req.messages[-1]["content"]).group(1))
        if req.attempt == 0:
            return ChatReply("I am not sure.", token_logprobs=[-1.0])
        return ChatReply(f"The answer is ({LETTERS[gold[q]]}).", token_logprobs=[-0.5])

    with ChatServer(first_unparsable, faults=faults) as server:
        pool = pool_for(server, names=("good",))
        first = answer_dataset(tmp_path / "ds", pool, progress=False)
        outage["on"] = False
        sent = len(server.request_log)
        second = answer_dataset(tmp_path / "ds", pool, progress=False)
        reasked = server.request_log[sent:]
    np.testing.assert_array_equal(first.answers[:, 0], NOT_ASKED)
    assert first.extra["answering"]["good"] == {
        "cached": 0,
        "requests_sent": 3 * (1 + FAST.max_attempts),
        "answered": 0,
        "unparsable": 0,
        "missing": 3,
    }
    assert len(reasked) == 3  # only the three re-asks, the first replies came from the cache
    np.testing.assert_array_equal(second.answers[:, 0], gold)
    assert second.extra["answering"]["good"]["cached"] == 3


def _question(folder: Path, q: int) -> tuple[str, list[str]]:
    rec = json.loads((folder / "questions.jsonl").read_text().splitlines()[q])
    return rec["question"], rec["options"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_fails_clearly_and_keeps_cached_work(tmp_path):
    gold, n_opts = make_dataset(tmp_path / "ds", n=10)
    cache_path = tmp_path / "cache.sqlite"
    dead_url = f"http://127.0.0.1:{closed_port()}/v1"
    with ChatServer(World(gold, n_opts, delay=0.3)) as server:  # slow: requests are in flight at the failure
        live = ModelConfig(name="good", base_url=server.base_url, model="id-good", max_concurrency=2)
        dead = ModelConfig(name="dead", base_url=dead_url, model="id-dead", timeout=1.0)
        with pytest.raises(EndpointError) as info:
            answer_dataset(tmp_path / "ds", PoolConfig((live, dead), retry=FAST), cache_path=cache_path, progress=False)
        assert dead_url in str(info.value) and "'dead'" in str(info.value) and "unreachable" in str(info.value)
        assert not (tmp_path / "ds" / "predictions.csv").exists()  # nothing half-written
        received = len(server.request_log)
        with ResponseCache(cache_path) as cache:
            kept = len(cache)
        assert kept == received  # requests in flight when the run stopped were finished and cached
        # resuming with the live model only asks just what the cache does not hold
        result = answer_dataset(tmp_path / "ds", PoolConfig((live,), retry=FAST), cache_path=cache_path, progress=False)
        assert len(server.request_log) - received == len(gold) - kept
    assert result.extra["answering"]["good"]["cached"] == kept
    np.testing.assert_array_equal(result.answers[:, 0], gold)


# ----------------------------------------------------------------------------- the command
def write_pool(path: Path, server: ChatServer, names=("good", "plain"), concurrency: int = 2) -> Path:
    data = {
        "retry": {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02},
        "defaults": {"base_url": server.base_url, "max_concurrency": concurrency, "timeout": 5},
        "models": [{"name": n, "model": f"id-{n}"} for n in names],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``cascal answer ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(["answer", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_cli_answers_and_reports(tmp_path, capsys):
    gold, n_opts = make_dataset(tmp_path / "ds", n=5)
    with ChatServer(World(gold, n_opts)) as server:
        pool = write_pool(tmp_path / "pool.yaml", server, names=("good", "mute", "plain"))
        status, stdout, stderr = run_cli(
            capsys, str(tmp_path / "ds"), "--pool", str(pool), "--models", "good,mute", "--no-progress"
        )
    assert status == 0, stderr
    assert re.search(r"^good\s+5\s+0\s+0\s+0\s+5$", stdout, re.M), stdout
    assert re.search(r"^mute\s+0\s+5\s+0\s+0\s+10$", stdout, re.M), stdout
    assert (tmp_path / "ds" / "answer_cache.sqlite").exists()
    assert load_dataset(tmp_path / "ds", embeddings=None).model_names == ["good", "mute"]


def test_cli_errors_name_the_problem(tmp_path, capsys):
    make_dataset(tmp_path / "ds", n=3)
    bad = tmp_path / "pool.yaml"
    bad.write_text(yaml.safe_dump({"models": [{"name": "a", "model": "m"}]}))
    status, _, err = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(bad), "--no-progress")
    assert status == 2 and "pool.yaml: models[0].base_url: required" in err
    dead = tmp_path / "dead.yaml"
    url = f"http://127.0.0.1:{closed_port()}/v1"
    dead.write_text(
        yaml.safe_dump(
            {"retry": {"max_attempts": 2, "base_delay": 0.01}, "models": [{"name": "a", "model": "m", "base_url": url}]}
        )
    )
    status, _, err = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(dead), "--no-progress")
    assert status == 1 and url in err and "run the command again to resume" in err
    status, _, err = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(dead), "--models", "zz", "--no-progress")
    assert status == 2 and "no model named 'zz'" in err
    status, _, err = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(dead), "--concurrency", "0", "--no-progress")
    assert status == 2 and "--concurrency" in err


def kill_answer_run_after(
    server: ChatServer, folder: Path, pool: Path, cache_path: Path, requests: int, within: float
) -> None:
    """Start ``cascal answer`` in a subprocess and ``kill -9`` it once ``server`` has received
    ``requests`` requests (failing if the run ends first or ``within`` seconds pass)."""
    args = [
        sys.executable,
        "-m",
        "cascal",
        "answer",
        str(folder),
        "--pool",
        str(pool),
        "--cache",
        str(cache_path),
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + within
    while len(server.request_log) < requests and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_kill_and_resume_pays_for_nothing_twice(tmp_path, capsys):
    n = 30
    gold, n_opts = make_dataset(tmp_path / "ds", n=n)
    cache_path = tmp_path / "cache.sqlite"
    with ChatServer(World(gold, n_opts, delay=0.08)) as server:
        pool = write_pool(tmp_path / "pool.yaml", server, concurrency=2)
        kill_answer_run_after(server, tmp_path / "ds", pool, cache_path, requests=16, within=60)
        first_log = server.request_log
        with ResponseCache(cache_path) as cache:
            cached_after_kill = {(req["model"], prompt_hash(req["messages"])) for _, req in cache.requests()}
        assert 0 < len(cached_after_kill) < 2 * n, "kill did not land mid-run"
        assert not (tmp_path / "ds" / "predictions.csv").exists()

        status, _, err = run_cli(
            capsys, str(tmp_path / "ds"), "--pool", str(pool), "--cache", str(cache_path), "--no-progress"
        )
        assert status == 0, err
        second_log = server.request_log[len(first_log) :]

    # no request was sent again for a prompt whose reply was cached, and none twice in the second run
    assert not set(second_log) & cached_after_kill
    assert len(set(second_log)) == len(second_log)
    # every response is in the cache exactly once
    with ResponseCache(cache_path) as cache:
        pairs = [(req["model"], prompt_hash(req["messages"])) for _, req in cache.requests()]
    assert len(pairs) == len(set(pairs)) == 2 * n
    all_pairs = {
        (f"id-{m}", prompt_hash(build_messages(*_question(tmp_path / "ds", q))))
        for m in ("good", "plain")
        for q in range(n)
    }
    assert set(pairs) == all_pairs
    # only requests in flight at the kill (at most 2 models x 2) were paid twice
    assert len(first_log) + len(second_log) - 2 * n <= 4
    result = load_dataset(tmp_path / "ds", embeddings=None)
    np.testing.assert_array_equal(result.answers, np.stack([gold, gold], axis=1))


def test_cli_reports_missing_answers_per_model(tmp_path, capsys):
    gold, n_opts = make_dataset(tmp_path / "ds", n=6)
    world = World(gold, n_opts)

    def faults(req: ChatRequest):
        return Fault.http_500() if req.model == "id-plain" and world.question(req) in (2, 3) else None

    with ChatServer(world, faults=faults) as server:
        pool = write_pool(tmp_path / "pool.yaml", server)
        status, stdout, stderr = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(pool), "--no-progress")
    assert status == 0, stderr
    assert re.search(r"^model\s+answered\s+unparsable\s+missing\s+cached\s+requests$", stdout, re.M), stdout
    assert re.search(r"^good\s+6\s+0\s+0\s+0\s+6$", stdout, re.M), stdout
    assert re.search(r"^plain\s+4\s+0\s+2\s+0\s+10$", stdout, re.M), stdout  # 2 prompts x 3 attempts failed
    assert "missing: 2 answers (plain 2)" in stdout and "run the command again to ask only those" in stdout
    cells = [line.split(",") for line in (tmp_path / "ds" / "predictions.csv").read_text().splitlines()[1:]]
    assert [c[2] for c in cells[2:4]] == ["", ""]  # empty cells (not asked), not "?"


@pytest.mark.filterwarnings("ignore::cascal.llm.cache.ReplyWarning")  # the bad_usage fault warns by design
def test_kill_mid_run_against_a_misbehaving_server_then_rerun(tmp_path, capsys):
    """End to end: ``cascal answer`` in a subprocess against a server that faults in every way
    (first requests of many prompts fail, a few prompts are down for good), killed with SIGKILL in
    the middle of the run, then run again. Nothing is paid twice except the requests in flight at
    the kill, nothing paid for is lost, the cache passes SQLite's integrity check, and the prompts
    that are down are reported missing and left empty."""
    n = 30
    gold, n_opts = make_dataset(tmp_path / "ds", n=n)
    world = World(gold, n_opts, delay=0.05)
    cache_path = tmp_path / "cache.sqlite"
    first_faults = [
        Fault.http_500(),
        Fault.reset(),
        Fault.deep_json(200_000),
        Fault.wrong_shape(),
        Fault.trickle(0.05),
        Fault.bad_usage(completion_tokens=-(10**23)),
        Fault.truncated(),
        Fault.malformed_json(),
    ]
    down = {("id-good", 4), ("id-plain", 4), ("id-plain", 17)}  # every request fails, in both runs

    def faults(req: ChatRequest):
        q = world.question(req)
        if (req.model, q) in down:
            return Fault.http_500()
        if req.attempt == 0 and q % 3 == 0:
            return first_faults[(q // 3) % len(first_faults)]
        return None

    def paid(r) -> bool:
        """A request answered with a usable reply (what a paid endpoint charges for and cascal keeps)."""
        return r.fault in (None, "bad_usage")

    with ChatServer(world, faults=faults) as server:
        data = {
            "retry": {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02},
            "defaults": {"base_url": server.base_url, "max_concurrency": 2, "timeout": 5, "request_deadline": 2.0},
            "models": [{"name": "good", "model": "id-good"}, {"name": "plain", "model": "id-plain", "stream": True}],
        }
        pool = tmp_path / "pool.yaml"
        pool.write_text(yaml.safe_dump(data))
        kill_answer_run_after(server, tmp_path / "ds", pool, cache_path, requests=20, within=30)
        first = server.requests
        with sqlite3.connect(cache_path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with ResponseCache(cache_path) as cache:
            cached_after_kill = {(req["model"], prompt_hash(req["messages"])) for _, req in cache.requests()}
        assert 0 < len(cached_after_kill) < 2 * n - len(down), "kill did not land mid-run"
        assert not (tmp_path / "ds" / "predictions.csv").exists()

        status, stdout, err = run_cli(
            capsys, str(tmp_path / "ds"), "--pool", str(pool), "--cache", str(cache_path), "--no-progress"
        )
        assert status == 0, err
        second = server.requests[len(first) :]

    pair = lambda r: (r.model, r.prompt_hash)  # noqa: E731
    all_pairs = {
        (f"id-{m}", prompt_hash(build_messages(*_question(tmp_path / "ds", q))))
        for m in ("good", "plain")
        for q in range(n)
    }
    down_pairs = {(m, prompt_hash(build_messages(*_question(tmp_path / "ds", q)))) for m, q in down}
    # the rerun asked nothing that the killed run had paid for and cached
    assert not {pair(r) for r in second} & cached_after_kill
    # paid twice: only prompts in flight at the kill (asked, not cached), at most 2 models x 2 in flight
    paid_count = counts([pair(r) for r in first + second if paid(r)])
    twice = {k for k, c in paid_count.items() if c > 1}
    assert all(paid_count[k] == 2 for k in twice) and len(twice) <= 4
    assert twice <= {pair(r) for r in first} - cached_after_kill
    assert not any(paid(r) for r in first + second if pair(r) in down_pairs)
    # nothing lost: every usable reply is in the cache once, and the cache is sound
    with sqlite3.connect(cache_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with ResponseCache(cache_path) as cache:
        stored = [(req["model"], prompt_hash(req["messages"])) for _, req in cache.requests()]
    assert len(stored) == len(set(stored)) and set(stored) == all_pairs - down_pairs
    # the answers: gold everywhere but the prompts that are down, which are missing (empty), not '?'
    result = load_dataset(tmp_path / "ds", embeddings=None)
    expected = np.stack([gold, gold], axis=1)
    for m, q in down:
        expected[q, ["id-good", "id-plain"].index(m)] = NOT_ASKED
    np.testing.assert_array_equal(result.answers, expected)
    assert re.search(r"^good\s+29\s+0\s+1\s+", stdout, re.M) and re.search(r"^plain\s+28\s+0\s+2\s+", stdout, re.M), (
        stdout
    )
    assert "missing: 3 answers (good 1, plain 2)" in stdout


# ----------------------------------------------------------------------------- real questions
def test_replaying_real_mmlu_pro_answers_reproduces_them(tmp_path, data_dir):
    """Real questions (LaTeX, long options, 3..10 options) go through prompt, server, extraction and the
    folder writer unchanged: a server replaying three real models' recorded letters yields exactly
    their predictions.csv columns (recorded '?' replayed as a reply without a letter)."""
    real = load_dataset(data_dir, embeddings=None, out_of_range="unparsable")
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(real.n_questions, size=40, replace=False))
    few_options = np.flatnonzero(real.n_options < 10)[:5]  # make sure short option lists are covered
    rows = np.union1d(rows, few_options)
    models = ["gpt-4o-2024-05-13_5shots", "Meta-Llama-3_1-8B-Instruct_5shots", "gemma-7b_5shots"]
    sub = real.subset(rows).select_models(models)
    bare = sub.__class__(
        answers=np.zeros((len(rows), 0), dtype=np.int8),
        n_options=sub.n_options,
        subjects=sub.subjects,
        model_names=[],
        gold=sub.gold,
        question_ids=sub.question_ids,
        questions=sub.questions,
        options=sub.options,
    )
    save_dataset(bare, tmp_path / "ds")
    recorded = {
        prompt_hash(build_messages(q, o)): sub.answers[i] for i, (q, o) in enumerate(zip(sub.questions, sub.options))
    }

    def replay(req: ChatRequest) -> ChatReply:
        code = int(recorded[prompt_hash(req.messages)][models.index(req.model)])
        if code < 0:
            return ChatReply("After careful thought I still cannot tell.")
        return ChatReply(f"Let me work through it step by step... The answer is ({LETTERS[code]}).")

    with ChatServer(replay) as server:
        pool = PoolConfig(tuple(ModelConfig(name=m, base_url=server.base_url, model=m) for m in models), retry=FAST)
        result = answer_dataset(tmp_path / "ds", pool, progress=False)
    expected = np.where(sub.answers == -2, NO_ANSWER, sub.answers)  # a not-asked cell was replayed as no letter
    np.testing.assert_array_equal(result.answers, expected)
    np.testing.assert_array_equal(load_dataset(tmp_path / "ds", embeddings=None).answers, expected)
    assert set(np.unique(result.n_options)) > {10}


# ----------------------------------------------------------------------------- extraction: version, event loop
def test_rerun_after_an_extractor_change_rereads_the_cache_without_new_requests(tmp_path, monkeypatch):
    import cascal.pipeline.answer as answer_stage
    from cascal.llm.extract import EXTRACTOR_VERSION, extract_answer

    n = 6
    gold, n_opts = make_dataset(tmp_path / "ds", n=n)

    def verdicts(req: ChatRequest) -> ChatReply:
        q = int(re.search(r"Question number (\d+):", req.messages[-1]["content"]).group(1))
        return ChatReply(f"Weighing the options, I think ({LETTERS[gold[q]]}).")

    def earlier_extractor(text: str, n_options: int) -> int:
        """An earlier extractor that could not read verdicts such as "I think (B)"."""
        return NO_ANSWER if "I think" in text else extract_answer(text, n_options)

    with ChatServer(verdicts) as server:
        pool = pool_for(server, names=("good",))  # one re-ask of an unparsable reply (FAST)
        with monkeypatch.context() as patch:
            patch.setattr(answer_stage, "extract_answer", earlier_extractor)
            patch.setattr(answer_stage, "EXTRACTOR_VERSION", EXTRACTOR_VERSION - 1)
            first = answer_dataset(tmp_path / "ds", pool, progress=False)
        sent = len(server.request_log)
        second = answer_dataset(tmp_path / "ds", pool, progress=False)
        assert len(server.request_log) == sent  # the rerun sent nothing
    assert sent == 2 * n  # the earlier extractor read nothing and re-asked every question once
    np.testing.assert_array_equal(first.answers[:, 0], NO_ANSWER)
    assert first.extra["extractor_version"] == EXTRACTOR_VERSION - 1
    np.testing.assert_array_equal(second.answers[:, 0], gold)
    assert second.extra["extractor_version"] == EXTRACTOR_VERSION
    assert second.extra["answering"]["good"] == {
        "cached": n,
        "requests_sent": 0,
        "answered": n,
        "unparsable": 0,
        "missing": 0,
    }
    np.testing.assert_array_equal(load_dataset(tmp_path / "ds", embeddings=None).answers[:, 0], gold)


def test_answering_extracts_off_the_event_loop(tmp_path, monkeypatch):
    import cascal.pipeline.answer as answer_stage

    gold, n_opts = make_dataset(tmp_path / "ds", n=4)
    real = answer_stage.extract_answer
    in_loop_thread: list[bool] = []

    def spy(text: str, n_options: int) -> int:
        try:
            asyncio.get_running_loop()
            in_loop_thread.append(True)
        except RuntimeError:
            in_loop_thread.append(False)
        return real(text, n_options)

    monkeypatch.setattr(answer_stage, "extract_answer", spy)
    with ChatServer(World(gold, n_opts)) as server:
        result = answer_dataset(tmp_path / "ds", pool_for(server, names=("good", "plain")), progress=False)
    np.testing.assert_array_equal(result.answers, np.stack([gold, gold], axis=1))
    assert len(in_loop_thread) == 8 and not any(in_loop_thread)


def test_a_slow_extraction_does_not_hold_up_the_other_replies(tmp_path, monkeypatch):
    """While one reply is slow to read, the loop goes on receiving and reading the others: a "plain"
    reply is read while a "good" reply is being read (impossible if extraction blocked the loop)."""
    import cascal.pipeline.answer as answer_stage

    gold, n_opts = make_dataset(tmp_path / "ds", n=4)
    real = answer_stage.extract_answer
    slow: list[tuple[float, float]] = []
    fast: list[float] = []

    def timed(text: str, n_options: int) -> int:
        start = time.monotonic()
        if text.startswith("Reasoning about"):  # the "good" model's replies
            time.sleep(0.3)
            slow.append((start, time.monotonic()))
        else:
            fast.append(start)
        return real(text, n_options)

    class Staggered(World):
        def __call__(self, req: ChatRequest) -> ChatReply:
            if req.model == "id-plain":
                time.sleep(0.1)  # "plain" replies arrive while "good" replies are being read
            return super().__call__(req)

    monkeypatch.setattr(answer_stage, "extract_answer", timed)
    with ChatServer(Staggered(gold, n_opts)) as server:
        result = answer_dataset(tmp_path / "ds", pool_for(server, names=("good", "plain")), progress=False)
    np.testing.assert_array_equal(result.answers, np.stack([gold, gold], axis=1))
    assert len(slow) == 4 and len(fast) == 4
    assert any(start < t < end for t in fast for start, end in slow)


def test_route_ask_models_extracts_off_the_event_loop(monkeypatch):
    import cascal.llm.extract as extract_module
    from cascal.pipeline.route import ask_models

    real = extract_module.extract_answer
    in_loop_thread: list[bool] = []

    def spy(text: str, n_options: int) -> int:
        try:
            asyncio.get_running_loop()
            in_loop_thread.append(True)
        except RuntimeError:
            in_loop_thread.append(False)
        return real(text, n_options)

    def replies(req: ChatRequest) -> ChatReply:
        return ChatReply("I think (C)." if req.model == "id-good" else "Answer: B")

    monkeypatch.setattr(extract_module, "extract_answer", spy)
    with ChatServer(replies) as server:
        pool = pool_for(server, names=("good", "plain"))
        answers = ask_models(pool, ["good", "plain"], "Which?", ["w", "x", "y", "z"])
    assert [(a.name, a.choice) for a in answers] == [("good", 2), ("plain", 1)]
    assert in_loop_thread == [False, False]
