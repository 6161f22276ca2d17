"""``cascal demo --quick --serve``: the trained router behind the gateway, asked through the openai client;
then a model added to the running gateway's pool by reloads, and traffic moving to it."""

from __future__ import annotations

import re
import shutil

from cascal.cli import main


def test_demo_serve_prints_which_model_answered(quick_demo, tmp_path, capsys):
    # a copy of the session's quick demo: its response caches spare the rerun the generation and
    # answering (tests/demo checks a cached rerun reproduces the numbers); the serve step is not cached
    out = shutil.copytree(quick_demo[0], tmp_path / "demo")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--serve"]) == 0
    out = capsys.readouterr().out
    answered = re.findall(r"\[demo\]\s+(sim-model-\d)\s+answered ([A-J?]) \(key ([A-J?])\) route \[(.*?)\]", out)
    assert len(answered) == 4
    for model, _, _, route in answered:
        assert route.split(",")[0].strip(" '") == model  # the top-ranked model answered
    assert re.search(r"cascal-vote-3: [A-J] \(sim-model-\d=", out)
    assert re.search(r"adding (sim-model-\d) to the pool while the gateway runs", out)
    shares = re.findall(
        r"\[demo\]\s+(\S+)\s+(\d+)% ->\s+(\d+)%\s+\(accuracy ([\d.]+); best other model ([\d.]+)\)", out
    )
    assert len(shares) == 2  # the quick demo's two subjects
    assert all(before == "0" for _, before, _, _, _ in shares)  # not routed to before the router knew it
    # after the second reload its traffic is largest where it is strongest against the others
    busiest = max(shares, key=lambda row: int(row[2]))
    strongest = max(shares, key=lambda row: float(row[3]) - float(row[4]))
    assert int(busiest[2]) > 0 and busiest[0] == strongest[0]
