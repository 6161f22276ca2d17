"""``cascal demo --quick --serve``: the trained router behind the gateway, asked through the openai client."""

from __future__ import annotations

import re

from cascal.cli import main


def test_demo_serve_prints_which_model_answered(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--no-progress", "--serve"]) == 0
    out = capsys.readouterr().out
    answered = re.findall(r"\[demo\]\s+(sim-model-\d)\s+answered ([A-J?]) \(key ([A-J?])\) route \[(.*?)\]", out)
    assert len(answered) == 4
    for model, _, _, route in answered:
        assert route.split(",")[0].strip(" '") == model  # the top-ranked model answered
    assert re.search(r"cascal-vote-3: [A-J] \(sim-model-\d=", out)
