"""`cascal train` / `cascal route` round trip on a small simulated dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from simulated_data import simulated_responses

from cascal.cli import main
from cascal.data import ResponseMatrix
from cascal.generation.parser import parse_questions
from cascal.generation.prompt import build_messages as generation_messages
from cascal.io import save_dataset
from cascal.llm.extract import extract_answer
from cascal.pipeline.answer import build_messages as answering_messages
from cascal.pipeline.embed import embed_dataset
from cascal.pipeline.route import PoolAnswer, rank_question, vote
from cascal.simulate import SUBJECTS, SimulatedResponder, SimWorld, serve_simulator
from cascal.simulate.catalogue import recognise_niche
from cascal.simulate.server import pool_yaml

N_SUBJECTS = 2
PER_SUBJECT = 120


def simulated_dataset(folder: Path, world: SimWorld, generator: str = "sim-generator-strong") -> ResponseMatrix:
    """The simulated pool's answers to a simulated generator's questions, saved and embedded."""
    data = simulated_responses(world, N_SUBJECTS, PER_SUBJECT, generator)
    save_dataset(data, folder)
    embed_dataset(folder, "hashing-256")
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_route")
    world = SimWorld(seed=11)
    data = simulated_dataset(root / "data", world)
    router_file = root / "router.cascal"
    assert main(["train", str(root / "data"), "--out", str(router_file)]) == 0
    return root, world, data, router_file


def test_train_writes_a_router_that_records_its_embedder(trained, capsys):
    from cascal.router import CascalRouter

    _, world, data, router_file = trained
    router = CascalRouter.load(router_file)
    assert router.embedding_model == "hashing-256"
    assert router.model_names_ == world.model_names
    assert sorted(router.subject_names_) == sorted({s.key for s in SUBJECTS[:N_SUBJECTS]})


def test_route_sends_niche_questions_to_the_niche_specialist(trained):
    """Over fresh questions, the routed first choice is the simulator's specialist of the question's
    niche far more often than chance (1 in 6)."""
    from cascal.router import CascalRouter

    _, world, _, router_file = trained
    router = CascalRouter.load(router_file)
    responder = SimulatedResponder(world)
    hits = total = 0
    for subject in SUBJECTS[:N_SUBJECTS]:
        reply = responder.reply(
            "sim-generator-oracle", generation_messages(subject.key, subject.description, 30, attempt=99)
        )
        for q in parse_questions(reply.text)[0]:
            niche = recognise_niche(q.question)
            specialist = max(world.model_names, key=lambda m: world.skill(m, niche))
            ranked = rank_question(router, q.question)
            hits += ranked[0].name == specialist
            total += 1
    assert total == 60
    assert hits / total > 0.6


def test_route_cli_prints_every_model_ranked(trained, capsys):
    _, world, data, router_file = trained
    capsys.readouterr()
    assert main(["route", str(router_file), data.questions[0], "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^([* ])\s+(\d+)\. (\S+)\s+([0-9.]+)$", out, flags=re.M)
    assert [r[2] for r in rows] and sorted(r[2] for r in rows) == sorted(world.model_names)
    assert [r[0] for r in rows] == ["*", "*"] + [" "] * (world.n_models - 2)
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_route_answer_asks_the_top_models_over_http(trained, capsys, tmp_path):
    root, world, data, router_file = trained
    question, options = data.questions[5], data.options[5]
    with serve_simulator(world) as server:
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(pool_yaml(server.base_url, world))
        capsys.readouterr()
        argv = ["route", str(router_file), question, "--top-k", "3", "--answer", "--pool", str(pool_file)]
        for opt in options:
            argv += ["--option", opt]
        assert main(argv) == 0
        asked = [m for m, _ in server.request_log]
    out = capsys.readouterr().out
    from cascal.router import CascalRouter

    ranked = [m.name for m in rank_question(CascalRouter.load(router_file), question)]
    assert sorted(asked) == sorted(ranked[:3])
    # each printed answer is what that simulated model answers to the answering prompt
    responder = SimulatedResponder(world)
    expected = {}
    for model in ranked[:3]:
        reply = responder.reply(model, answering_messages(question, options))
        index = extract_answer(reply.text, len(options))
        expected[model] = "ABCDEFGHIJ"[index] if index >= 0 else "?"
        assert f"{model}" in out and re.search(rf"{model}\s+answered {re.escape(expected[model])}", out)
    assert re.search(r"vote of the top 3: [A-J?]", out)


def test_vote_plurality_and_tie_to_the_best_ranked():
    assert vote([PoolAnswer("a", 1, ""), PoolAnswer("b", 2, ""), PoolAnswer("c", 2, "")]) == 2
    assert vote([PoolAnswer("a", 0, ""), PoolAnswer("b", 1, ""), PoolAnswer("c", 2, "")]) == 0
    assert vote([PoolAnswer("a", -1, ""), PoolAnswer("b", 3, "")]) == 3
    assert vote([PoolAnswer("a", -1, "")]) == -1
    assert vote([]) == -1


def test_train_and_route_errors_are_clear(tmp_path, trained, capsys):
    _, _, _, router_file = trained
    empty = tmp_path / "empty"
    data = ResponseMatrix(
        answers=np.zeros((2, 0), dtype=np.int8),
        n_options=np.array([4, 4]),
        subjects=np.array(["a", "a"]),
        model_names=[],
        questions=["q one", "q two"],
        options=[list("abcd")] * 2,
    )
    save_dataset(data, empty)
    assert main(["train", str(empty), "--out", str(tmp_path / "r.cascal")]) == 2
    assert "no model columns" in capsys.readouterr().err
    assert main(["route", str(router_file), "a question", "--top-k", "9"]) == 2
    assert "--top-k" in capsys.readouterr().err
    assert main(["route", str(router_file), "a question", "--answer"]) == 2
    assert "--pool" in capsys.readouterr().err
    with pytest.raises(ValueError, match="question"):
        rank_question(object(), "  ")
    with pytest.raises(ValueError, match="embedding model"):
        rank_question(type("R", (), {"embedding_model": None})(), "why?")


def test_train_summary_states_the_routing_constants(trained):
    from cascal.pipeline.train import describe
    from cascal.router import CascalRouter

    router = CascalRouter.load(trained[3])
    line = describe(router).splitlines()[-1]
    assert line.startswith(f"routing: subjects soft, temperature {router.subject_temp_:.4f} (calibrated)")
    assert f"{router.fallback_distance_:.3f} (calibrated)" in line
    router.set_params(subject_temp=0.0, fallback_distance=0.5)
    router.subject_temp_, router.fallback_distance_ = 0.0, 0.5
    line = describe(router).splitlines()[-1]
    assert "hard (nearest subject only)" in line and line.endswith("0.500")


def test_train_takes_the_routing_constants(trained, tmp_path, capsys):
    from cascal.router import CascalRouter

    root = trained[0]
    out = tmp_path / "hard.cascal"
    assert (
        main(["train", str(root / "data"), "--out", str(out), "--subject-temp", "0", "--fallback-distance", "0.6"]) == 0
    )
    assert "hard (nearest subject only)" in capsys.readouterr().out
    router = CascalRouter.load(out)
    assert router.subject_temp_ == 0.0 and router.fallback_distance_ == 0.6
    with pytest.raises(SystemExit):
        main(["train", str(root / "data"), "--out", str(out), "--subject-temp", "warm"])
    assert "expected a number or 'auto'" in capsys.readouterr().err
    assert main(["train", str(root / "data"), "--out", str(out), "--subject-temp", "-1"]) == 2
    assert "subject_temp" in capsys.readouterr().err
