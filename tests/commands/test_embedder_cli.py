"""``cascal embedder build`` on the real MiniLM weights (a small vocabulary, so it takes seconds):
what it prints and writes, that a rebuild gives the same files, and one error line for a bad source."""

from __future__ import annotations

import json

from cascal.cli import main as cli_main
from cascal.embedding import StaticEmbedder
from cascal.encoders.static import MANIFEST


def test_build_prints_the_name_and_hash_and_rebuilds_identically(minilm_dir, tmp_path, capsys):
    args = ["embedder", "build", str(minilm_dir), "--dim", "32", "--vocab-limit", "300", "--no-progress"]
    assert cli_main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    embedder = StaticEmbedder(tmp_path / "a")
    assert "static-all-MiniLM-L6-v2-d32: 300 tokens x 32 dims" in out
    assert f"embedder name: static:{(tmp_path / 'a').resolve()}" in out and embedder.content_hash in out
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["build"]["vocab_limit"] == 300 and manifest["dim"] == 32
    assert cli_main([*args, "--out", str(tmp_path / "b")]) == 0
    assert StaticEmbedder(tmp_path / "b").content_hash == embedder.content_hash


def test_a_bad_source_or_option_is_one_error_line(minilm_dir, tmp_path, capsys):
    assert cli_main(["embedder", "build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert f"error: {tmp_path / 'nowhere' / 'config.json'}: no such file" in capsys.readouterr().err
    args = ["embedder", "build", str(minilm_dir), "--out", str(tmp_path / "o"), "--dim", "999", "--no-progress"]
    assert cli_main(args) == 2
    assert "dim: must be an integer in 1..384" in capsys.readouterr().err
