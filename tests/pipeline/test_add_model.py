"""Adding a model to a pool: `cascal answer` on an answered folder asks only the new model.

The other models' replies come from the folder's response cache (no request), so a pool that
gained one model costs one request per question for that model. A folder whose answers came
without their cache (imported from elsewhere) asks only the new model with ``--models NEW``.
Requests are counted at the simulated server's request log.
"""

from __future__ import annotations

import numpy as np
from test_answer import World, make_dataset, pool_for, run_cli, write_pool

from cascal.io import load_dataset
from cascal.pipeline.answer import DEFAULT_CACHE_NAME, answer_dataset
from cascal.simulate.chat_server import ChatServer


def per_model(log, since=0):
    out: dict[str, int] = {}
    for model, _ in log[since:]:
        out[model] = out.get(model, 0) + 1
    return out


def test_a_pool_that_gained_a_model_asks_only_that_model_once_per_question(tmp_path):
    gold, n_opts = make_dataset(tmp_path / "ds", n=10)
    with ChatServer(World(gold, n_opts)) as server:
        first = answer_dataset(tmp_path / "ds", pool_for(server, names=("good", "shifted")), progress=False)
        sent = len(server.request_log)
        grown = answer_dataset(tmp_path / "ds", pool_for(server, names=("good", "shifted", "plain")), progress=False)
        assert per_model(server.request_log, sent) == {"id-plain": len(gold)}
    assert grown.model_names == ["good", "shifted", "plain"]
    np.testing.assert_array_equal(grown.answers[:, :2], first.answers)
    np.testing.assert_array_equal(grown.answers[:, 2], gold)
    stats = grown.extra["answering"]
    assert stats["good"]["requests_sent"] == stats["shifted"]["requests_sent"] == 0
    assert stats["plain"] == {
        "cached": 0,
        "requests_sent": len(gold),
        "answered": len(gold),
        "unparsable": 0,
        "missing": 0,
    }


def test_cli_with_the_grown_pool_yaml_asks_only_the_new_model(tmp_path, capsys):
    gold, n_opts = make_dataset(tmp_path / "ds", n=6)
    with ChatServer(World(gold, n_opts)) as server:
        pool = write_pool(tmp_path / "pool.yaml", server, names=("good", "mute"))
        status, _, stderr = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(pool), "--no-progress")
        assert status == 0, stderr
        sent = len(server.request_log)
        pool = write_pool(tmp_path / "pool.yaml", server, names=("good", "mute", "plain"))  # the edit
        status, stdout, stderr = run_cli(capsys, str(tmp_path / "ds"), "--pool", str(pool), "--no-progress")
        assert status == 0, stderr
        assert per_model(server.request_log, sent) == {"id-plain": len(gold)}
    assert load_dataset(tmp_path / "ds", embeddings=None).model_names == ["good", "mute", "plain"]


def test_a_folder_without_its_cache_asks_only_the_models_named(tmp_path):
    """Answers imported without their cache would all be asked again by the whole pool: ``models``
    (``--models NEW``) asks only the new one and keeps the other columns as they are."""
    gold, n_opts = make_dataset(tmp_path / "ds", n=8)
    with ChatServer(World(gold, n_opts)) as server:
        first = answer_dataset(tmp_path / "ds", pool_for(server, names=("good", "shifted")), progress=False)
        (tmp_path / "ds" / DEFAULT_CACHE_NAME).unlink()
        sent = len(server.request_log)
        grown = answer_dataset(
            tmp_path / "ds", pool_for(server, names=("good", "shifted", "plain")), models=["plain"], progress=False
        )
        assert per_model(server.request_log, sent) == {"id-plain": len(gold)}
    assert grown.model_names == ["good", "shifted", "plain"]
    np.testing.assert_array_equal(grown.answers[:, :2], first.answers)
    np.testing.assert_array_equal(grown.logprobs[:, :2], first.logprobs)
