"""Generation end to end against the OpenAI-compatible test server on 127.0.0.1 (scripted generator)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from cascal.cli import main as cli_main
from cascal.generation import build_messages
from cascal.generation.prompt import MAX_AVOID
from cascal.io import load_dataset
from cascal.llm.config import ModelConfig, RetryPolicy, TasksConfig
from cascal.pipeline.generate import GenerationError, generate_dataset
from cascal.simulate.chat_server import ChatReply, ChatRequest, ChatServer, Fault

VOCAB = (
    "acid base enzyme orbit photon tariff verdict syntax lattice rupture glacier sonnet quorum vector "
    "plasma monopoly neuron fresco dialect torque ledger mitosis canyon ballad axiom catalyst inertia "
    "senate isotope gradient allele parable reflux bishop cipher meadow tundra refrain compass"
).split()
FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, jitter=0.0)


def fresh_question(subject: str, batch: int, i: int) -> tuple[str, list[str], int]:
    """A deterministic question unlike every other (random words seeded by its coordinates)."""
    rnd = random.Random(f"{subject}/{batch}/{i}")
    stem = " ".join(rnd.sample(VOCAB, 9)) + f"? [{subject} {batch}.{i}]"
    options = [" ".join(rnd.sample(VOCAB, 2)) for _ in range(4)]
    return stem, options, rnd.randrange(4)


def as_block(stem: str, options: list[str], answer: int) -> str:
    opts = "".join(f"<option>{o}</option>\n" for o in options)
    return f"<question>{stem}</question>\n{opts}<answer>{'ABCD'[answer]}</answer>"


def prompt_fields(req: ChatRequest) -> tuple[str, int, int]:
    user = req.messages[-1]["content"]
    subject = re.search(r"^Subject: (.+)$", user, re.M).group(1)
    n = int(re.search(r"Write (\d+) new", user).group(1))
    batch = int(re.search(r"\(batch (\d+)\)", user).group(1))
    return subject, n, batch


class ScriptedGenerator:
    """Per subject and batch: garbage, duplicates, malformed blocks, or ``n`` fresh questions."""

    def __init__(self, garbage_batches=(), repeat_first_in_batch2=(), shared_question=None) -> None:
        self.garbage_batches = set(garbage_batches)
        self.repeat = set(repeat_first_in_batch2)
        self.shared = shared_question
        self.keys: dict[str, int] = {}

    def __call__(self, req: ChatRequest) -> ChatReply:
        subject, n, batch = prompt_fields(req)
        if (subject, batch) in self.garbage_batches:
            return ChatReply("As an AI language model I would rather write an essay about {subject}.")
        blocks = []
        if batch == 2 and subject in self.repeat:
            blocks.append(as_block(*fresh_question(subject, 1, 0)))  # exact repeat of batch 1
        if batch == 1 and self.shared is not None:
            blocks.append(as_block(*self.shared))  # same question in every subject
        blocks.append("<question>Broken block without options</question><answer>A</answer>")
        for i in range(n):
            stem, options, answer = fresh_question(subject, batch, i)
            self.keys[stem] = answer
            blocks.append(as_block(stem, options, answer))
        return ChatReply("Here you go:\n```\n" + "\n\n".join(blocks) + "\n```\nGood luck!")


def generator_config(server: ChatServer) -> ModelConfig:
    return ModelConfig(name="gen", base_url=server.base_url, model="scripted-gen", logprobs=False, temperature=0.7)


def tasks_config(counts: dict[str, int]) -> TasksConfig:
    return TasksConfig({s: f"Questions about {s}." for s in counts}, dict(counts))


def test_end_to_end_counts_garbage_duplicates_and_writes_dataset(tmp_path: Path) -> None:
    shared = fresh_question("shared", 0, 0)
    script = ScriptedGenerator(
        garbage_batches={("algebra", 1)}, repeat_first_in_batch2={"biology"}, shared_question=shared
    )
    with ChatServer(script) as server:
        out = generate_dataset(
            tasks_config({"algebra": 7, "biology": 8}),
            generator_config(server),
            tmp_path / "ds",
            batch_size=5,
            progress=False,
            retry=FAST_RETRY,
        )
        n_requests = len(server.request_log)

    report = json.loads((out / "generation_report.json").read_text())
    alg, bio = report["subjects"]
    # algebra (N=7, batch 5): batch 1 garbage -> asked again; batch 2 gives 5, batch 3 the last 2
    assert alg["attempts"] == 3 and alg["parse"]["empty_replies"] == 1
    assert alg["generated"] == 7 and alg["shortfall"] == 0
    # biology (N=8): batch 1 = shared + 5 fresh, cut to the 5 wanted; batch 2 = an exact repeat of
    # batch 1's first question (dropped) + 3 fresh
    assert bio["generated"] == 8 and bio["attempts"] == 2
    assert bio["duplicates"]["dropped"] == {"exact": 1}
    # every reply carried one broken block
    assert alg["parse"]["skipped"] == {"too_few_options": 2}
    assert bio["parse"]["skipped"] == {"too_few_options": bio["attempts"]}
    assert n_requests == alg["attempts"] + bio["attempts"]

    ds = load_dataset(out)
    assert ds.n_models == 0 and ds.n_questions == 15
    assert list(ds.subjects) == ["algebra"] * 7 + ["biology"] * 8
    assert len(set(ds.question_ids.tolist())) == 15
    for q, opts, gold in zip(ds.questions, ds.options, ds.gold):
        if q == shared[0]:
            assert gold == shared[2]
        else:
            assert gold == script.keys[q] and len(opts) == 4
    assert all(f.get("generator") == "gen" for f in ds.extra["question_fields"])


def test_rerun_is_served_from_cache_and_identical(tmp_path: Path) -> None:
    script = ScriptedGenerator(garbage_batches={("law", 2)})
    tasks = tasks_config({"law": 9, "music": 4})
    with ChatServer(script) as server:
        gen = generator_config(server)
        out = generate_dataset(tasks, gen, tmp_path / "ds", batch_size=4, progress=False, retry=FAST_RETRY)
        first = (out / "questions.jsonl").read_bytes()
        sent = len(server.request_log)
        assert sent > 0
        generate_dataset(tasks, gen, tmp_path / "ds", batch_size=4, progress=False, retry=FAST_RETRY)
        assert len(server.request_log) == sent  # nothing new was asked
    assert (out / "questions.jsonl").read_bytes() == first
    report = json.loads((out / "generation_report.json").read_text())
    assert all(s["cached_replies"] == s["attempts"] for s in report["subjects"])


def test_cross_subject_duplicate_dropped_in_subject_order(tmp_path: Path) -> None:
    shared = fresh_question("shared", 0, 0)
    with ChatServer(ScriptedGenerator(shared_question=shared)) as server:
        out = generate_dataset(
            tasks_config({"a": 3, "b": 3}),
            generator_config(server),
            tmp_path / "ds",
            batch_size=10,
            max_attempts=1,
            progress=False,
        )
    report = json.loads((out / "generation_report.json").read_text())
    assert [s["cross_subject_duplicates"] for s in report["subjects"]] == [0, 1]
    assert [s["generated"] for s in report["subjects"]] == [3, 2]
    ds = load_dataset(out)
    assert ds.questions.count(shared[0]) == 1 and ds.subjects[ds.questions.index(shared[0])] == "a"


def test_server_faults_are_retried_and_exhausted_requests_counted(tmp_path: Path) -> None:
    def faults(req: ChatRequest):
        subject, _, batch = prompt_fields(req)
        if subject == "flaky" and req.attempt == 0:
            return Fault.http_500()  # first try of every prompt fails, the retry succeeds
        if subject == "broken" and batch == 1:
            return Fault.malformed_json()  # both tries fail: the attempt counts as failed
        return None

    with ChatServer(ScriptedGenerator(), faults=faults) as server:
        out = generate_dataset(
            tasks_config({"flaky": 3, "broken": 3}),
            generator_config(server),
            tmp_path / "ds",
            batch_size=3,
            progress=False,
            retry=FAST_RETRY,
        )
    flaky, broken = json.loads((out / "generation_report.json").read_text())["subjects"]
    assert flaky["generated"] == 3 and flaky["attempts"] == 1 and flaky["failed_requests"] == 0
    assert broken["generated"] == 3 and broken["attempts"] == 2 and broken["failed_requests"] == 1


def test_gives_up_after_max_attempts(tmp_path: Path) -> None:
    script = ScriptedGenerator(garbage_batches={("void", b) for b in range(1, 10)})
    with ChatServer(script) as server:
        with pytest.raises(GenerationError, match="no valid question"):
            generate_dataset(
                tasks_config({"void": 5}),
                generator_config(server),
                tmp_path / "ds",
                batch_size=5,
                max_attempts=3,
                progress=False,
            )
        assert len(server.request_log) == 3
    report = json.loads((tmp_path / "ds" / "generation_report.json").read_text())
    assert report["subjects"][0]["attempts"] == 3 and report["subjects"][0]["shortfall"] == 5
    assert report["subjects"][0]["parse"]["empty_replies"] == 3


def test_prompts_differ_per_attempt_and_quote_accepted_stems() -> None:
    first = build_messages("chemistry", "Organic chemistry.", 5, attempt=0)
    later = build_messages("chemistry", "Organic chemistry.", 5, attempt=1, avoid=[f"stem {i}" for i in range(20)])
    assert first != later
    text = later[-1]["content"]
    assert "batch 2" in text and "<question>" in text and "stem 19" in text and "stem 7" not in text
    assert text.count("\n- stem ") == MAX_AVOID
    assert "A, B, C, D, E, F" in build_messages("x", "d", 1, n_options=6)[-1]["content"]
    for kwargs, arg in [
        (dict(subject=""), "subject"),
        (dict(description=" "), "description"),
        (dict(n_questions=0), "n_questions"),
        (dict(attempt=-1), "attempt"),
        (dict(n_options=21), "n_options"),
        (dict(n_options=1), "n_options"),
    ]:
        args = dict(subject="s", description="d", n_questions=1) | kwargs
        with pytest.raises(ValueError, match=arg):
            build_messages(args.pop("subject"), args.pop("description"), args.pop("n_questions"), **args)


def test_bad_arguments(tmp_path: Path) -> None:
    gen = ModelConfig(name="gen", base_url="http://127.0.0.1:9/v1", model="m")
    tasks = tasks_config({"a": 1})
    for kwargs, arg in [
        (dict(n_per_subject=0), "n_per_subject"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_attempts=0), "max_attempts"),
        (dict(near_threshold=0.0), "near_threshold"),
        (dict(n_options=1), "n_options"),
        (dict(n_options=21), "n_options"),
    ]:
        with pytest.raises(ValueError, match=arg):
            generate_dataset(tasks, gen, tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()  # rejected before anything was created
    with pytest.raises(TypeError, match="tasks"):
        generate_dataset({"a": "b"}, gen, tmp_path / "x")  # type: ignore[arg-type]


def test_cli_generate_with_pool_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ChatServer(ScriptedGenerator()) as server:
        (tmp_path / "pool.yaml").write_text(
            f"retry: {{max_attempts: 2, base_delay: 0.0}}\n"
            f"models:\n  - {{name: gen, base_url: '{server.base_url}', model: scripted, logprobs: false}}\n"
        )
        (tmp_path / "tasks.yaml").write_text(
            "questions_per_subject: 9\nsubjects:\n  physics: Mechanics.\n  art: Painting.\n"
        )
        code = cli_main(
            [
                "generate",
                "--tasks",
                str(tmp_path / "tasks.yaml"),
                "--generator",
                "gen",
                "--pool",
                str(tmp_path / "pool.yaml"),
                "--out",
                str(tmp_path / "ds"),
                "--n",
                "3",
                "--no-progress",
            ]
        )
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 6 questions" in out and "physics" in out
    ds = load_dataset(tmp_path / "ds")
    assert ds.n_questions == 6 and sorted(set(ds.subjects)) == ["art", "physics"]
    assert np.all(ds.gold >= 0)


def test_cli_generate_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tasks.yaml").write_text("subjects:\n  physics: Mechanics.\n")
    code = cli_main(["generate", "--tasks", str(tmp_path / "tasks.yaml"), "--out", str(tmp_path / "ds")])
    assert code == 2
    assert "generator" in capsys.readouterr().err


def test_interrupted_run_resumes_without_paying_twice(tmp_path: Path) -> None:
    """A run whose later batches failed is rerun: finished replies come from the cache, only the
    missing batches are requested."""
    script = ScriptedGenerator()
    outage = {"on": True}
    asked: list[int] = []

    def flaky(req: ChatRequest) -> ChatReply:
        batch = prompt_fields(req)[2]
        asked.append(batch)
        if outage["on"] and batch >= 2:
            raise RuntimeError("backend down")  # served as HTTP 500
        return script(req)

    tasks = tasks_config({"geo": 9})
    with ChatServer(flaky) as server:
        gen = generator_config(server)
        generate_dataset(tasks, gen, tmp_path / "ds", batch_size=3, max_attempts=3, progress=False, retry=FAST_RETRY)
        first = json.loads((tmp_path / "ds" / "generation_report.json").read_text())["subjects"][0]
        assert first["generated"] == 3 and first["failed_requests"] == 2 and first["shortfall"] == 6
        assert sorted(asked) == [1, 2, 2, 3, 3]  # each failing prompt tried twice (FAST_RETRY)
        asked.clear()
        outage["on"] = False
        generate_dataset(tasks, gen, tmp_path / "ds", batch_size=3, max_attempts=3, progress=False, retry=FAST_RETRY)
    second = json.loads((tmp_path / "ds" / "generation_report.json").read_text())["subjects"][0]
    assert second["generated"] == 9 and second["cached_replies"] == 1
    assert sorted(asked) == [2, 3]  # batch 1 came from the cache
