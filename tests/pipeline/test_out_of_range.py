"""`--out-of-range`: every command that loads a dataset's answers lets the user choose what a letter
beyond its question's options means, as ``load_dataset(out_of_range=...)`` does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascal.cli import build_parser, main
from cascal.data import LETTERS, NO_ANSWER, ResponseMatrix
from cascal.io import load_dataset, save_dataset
from cascal.pipeline.embed import embed_dataset

N_Q = 60
MODELS = ["m0", "m1", "m2", "m3"]


def answered_folder(folder: Path, *, out_of_range_cell: bool = True) -> Path:
    """60 four-option questions in two subjects answered by four models, embedded; with
    ``out_of_range_cell`` model m3 answers question 0 with the letter E (beyond its 4 options)."""
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 4, size=N_Q)
    answers = np.stack([np.where(rng.random(N_Q) < p, gold, (gold + 1) % 4) for p in (0.9, 0.7, 0.5, 0.3)], axis=1)
    rm = ResponseMatrix(
        answers=answers,
        n_options=np.full(N_Q, 4),
        subjects=np.array(["law", "math"] * (N_Q // 2)),
        model_names=MODELS,
        gold=gold,
        questions=[f"Question {i} on {'law' if i % 2 == 0 else 'math'} topic {i % 7}" for i in range(N_Q)],
        options=[["a", "b", "c", "d"]] * N_Q,
    )
    save_dataset(rm, folder)
    embed_dataset(folder, "hashing-32")
    if out_of_range_cell:
        lines = (folder / "predictions.csv").read_text().splitlines()
        cells = lines[1].split(",")
        cells[-1] = LETTERS[4]
        lines[1] = ",".join(cells)
        (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_embed_reads_questions_only(tmp_path):
    folder = answered_folder(tmp_path / "d")
    (folder / "embeddings_hashing-32.npy").unlink()
    x = embed_dataset(folder, "hashing-32")  # the letter E in predictions.csv is no concern of embed
    assert x.shape == (N_Q, 32)


def test_train_refuses_by_default_and_names_the_flag(tmp_path, capsys):
    folder = answered_folder(tmp_path / "d")
    assert main(["train", str(folder), "--out", str(tmp_path / "r.cascal")]) == 2
    err = capsys.readouterr().err
    assert "predictions.csv:2: column 'm3': answer 'E' is beyond the question's 4 options" in err
    assert "--out-of-range unparsable" in err
    assert not (tmp_path / "r.cascal").exists()


def test_train_with_out_of_range_unparsable(tmp_path, capsys):
    from cascal.router import CascalRouter

    folder = answered_folder(tmp_path / "d")
    assert main(["train", str(folder), "--out", str(tmp_path / "r.cascal"), "--out-of-range", "unparsable"]) == 0
    assert CascalRouter.load(tmp_path / "r.cascal").model_names_ == MODELS
    assert "saved router to" in capsys.readouterr().out


def test_train_router_passes_out_of_range_through(tmp_path, monkeypatch):
    from cascal.pipeline import train

    seen = {}
    real = load_dataset

    def spy(path, **kwargs):
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr("cascal.io.load_dataset", spy)
    folder = answered_folder(tmp_path / "d")
    train.train_router(folder, tmp_path / "r.cascal", out_of_range="unparsable")
    assert seen["out_of_range"] == "unparsable"


def test_filter_with_out_of_range_unparsable_writes_a_question_mark(tmp_path, capsys):
    folder = answered_folder(tmp_path / "d")
    assert main(["filter", str(folder), "--out", str(tmp_path / "f"), "--keep-disagreeing"]) == 2
    assert "--out-of-range unparsable" in capsys.readouterr().err
    assert (
        main(
            ["filter", str(folder), "--out", str(tmp_path / "f"), "--keep-disagreeing", "--out-of-range", "unparsable"]
        )
        == 0
    )
    out = load_dataset(tmp_path / "f")
    assert out.n_questions == N_Q and out.answers[0, 3] == NO_ANSWER
    assert json.loads((tmp_path / "f" / "filter_report.json").read_text())["overall"]["kept"] == N_Q


@pytest.mark.parametrize("command", ["train", "filter"])
def test_the_flag_accepts_only_the_two_choices(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, str(tmp_path), "--out", "x", "--out-of-range", "ignore"])
    assert info.value.code == 2
    assert "invalid choice: 'ignore'" in capsys.readouterr().err
    assert build_parser().parse_args([command, str(tmp_path), "--out", "x"]).out_of_range == "error"


def test_evaluate_counts_by_default_and_refuses_on_request(tmp_path, capsys):
    folder = answered_folder(tmp_path / "d")
    common = [
        "evaluate",
        "--data",
        str(folder),
        "--pool",
        "m0,m1,m2,m3",
        "--keys",
        "real",
        "--seeds",
        "1",
        "--routers",
        "random",
        "--no-plots",
        "--quiet",
    ]
    assert main([*common, "--out", str(tmp_path / "e1")]) == 0
    assert "note: 1 answer(s)" in capsys.readouterr().err
    results = json.loads((tmp_path / "e1" / "results.json").read_text())
    assert results["out_of_range_answers"] == {"m3": 1}
    assert main([*common, "--out", str(tmp_path / "e2"), "--out-of-range", "error"]) == 2
    assert "column 'm3': answer 'E' is beyond the question's 4 options" in capsys.readouterr().err
