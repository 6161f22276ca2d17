"""Embeddings: the stateless hashing fallback for real, sentence-transformers through a fake module."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from cascal.cli import main as cli_main
from cascal.data import ResponseMatrix
from cascal.embedding import (
    Embedder,
    EmbeddingError,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    get_embedder,
    load_embedder,
    rademacher_rows,
    splitmix64,
)
from cascal.io import load_dataset, save_dataset
from cascal.pipeline.embed import embed_dataset

TEXTS = [
    "What is the capital city of France?",
    "Which city is the capital of France?",
    "Compute the derivative of x squared times sin x.",
    "Find the derivative of x^2 sin(x) with respect to x.",
    "Which enzyme unwinds DNA during replication?",
]


def have_sentence_transformers() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------ hashing
def test_splitmix64_matches_published_outputs() -> None:
    # SplitMix64 (Steele, Lea, Flood 2014; Vigna's C reference): first output from state 0 and from 1234567
    out = splitmix64(np.array([0, 1234567], dtype=np.uint64))
    assert out.tolist() == [0xE220A8397B1DCDAF, 6457827717110365317]


def test_rademacher_rows_are_signs_fixed_and_balanced() -> None:
    rows = rademacher_rows(np.array([0, 1, 12345, 2**20 - 1]), 256)
    assert rows.shape == (4, 256) and set(np.unique(rows).tolist()) == {-1.0, 1.0}
    assert np.array_equal(rows, rademacher_rows(np.array([0, 1, 12345, 2**20 - 1]), 256))
    big = rademacher_rows(np.arange(4000), 64)
    assert abs(big.mean()) < 0.01
    # distinct buckets get nearly orthogonal rows
    gram = big[:200] @ big[:200].T / 64
    off = gram[~np.eye(200, dtype=bool)]
    assert abs(off.mean()) < 0.02 and np.abs(off).max() < 0.7


def test_hashing_embedder_shape_norm_determinism() -> None:
    emb = HashingEmbedder()
    assert emb.name == "hashing-256"
    x = emb.encode(TEXTS)
    assert x.shape == (5, 256) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    again = load_embedder("hashing-256").encode(TEXTS)
    assert np.array_equal(x, again)
    # one at a time gives the same rows as a batch (up to float summation order)
    single = np.vstack([emb.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(single, x, atol=1e-6)
    assert emb.encode([]).shape == (0, 256)


def test_hashing_is_reproducible_in_a_fresh_process(tmp_path: Path) -> None:
    out = tmp_path / "x.npy"
    code = (
        "import numpy as np; from cascal.embedding import load_embedder;"
        f"np.save({str(out)!r}, load_embedder('hashing-64').encode({TEXTS!r}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(out), HashingEmbedder(64).encode(TEXTS))


def test_hashing_similar_texts_are_closer_than_unrelated() -> None:
    x = HashingEmbedder().encode(TEXTS)
    sim = x @ x.T
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3], sim[0, 4])
    assert sim[2, 3] > max(sim[2, 0], sim[2, 1], sim[2, 4])


def test_hashing_texts_without_words_still_unit_norm() -> None:
    x = HashingEmbedder(32).encode(["", "?? !!", "x + y = 2"])
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(x[0], x[1])  # both have no word: the same fixed vector


def test_hashing_on_real_questions_groups_categories(data_dir: Path) -> None:
    """Real MMLU-Pro stems: a question's nearest neighbour shares its category far more often than
    chance (the sum of squared category shares, about 0.08 here)."""
    ds = load_dataset(data_dir, embeddings=None, out_of_range="unparsable")
    rng = np.random.default_rng(0)
    rows = rng.choice(ds.n_questions, size=1500, replace=False)
    x = HashingEmbedder().encode([ds.questions[i] for i in rows])
    cats = ds.subjects[rows]
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    agree = float((cats[sim.argmax(axis=1)] == cats).mean())
    _, counts = np.unique(cats, return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum())
    assert agree > 3 * chance


def test_bad_inputs() -> None:
    emb = HashingEmbedder(8)
    with pytest.raises(EmbeddingError, match="texts"):
        emb.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(EmbeddingError, match=r"texts\[1\]"):
        emb.encode(["ok", 3])  # type: ignore[list-item]
    for dim in (1, 0, True, 2.5):
        with pytest.raises(EmbeddingError, match="dim"):
            HashingEmbedder(dim)  # type: ignore[arg-type]
    with pytest.raises(EmbeddingError, match="backend"):
        get_embedder("x", backend="torch")
    with pytest.raises(EmbeddingError, match="name"):
        load_embedder("")
    with pytest.raises(EmbeddingError, match="hashing"):
        get_embedder("hashing-64", backend="sentence-transformers")


# ------------------------------------------------------------------------------------------ backends
@pytest.mark.skipif(have_sentence_transformers(), reason="checks the behaviour without sentence-transformers")
def test_auto_falls_back_with_a_warning_but_load_never_does() -> None:
    with pytest.warns(RuntimeWarning, match="hashing-256"):
        emb = get_embedder("all-MiniLM-L6-v2")
    assert isinstance(emb, HashingEmbedder) and emb.name == "hashing-256"
    with pytest.raises(EmbeddingError, match=r"cascal\[embed\]"):
        load_embedder("all-MiniLM-L6-v2")
    with pytest.raises(EmbeddingError, match=r"cascal\[embed\]"):
        get_embedder("all-MiniLM-L6-v2", backend="sentence-transformers")


@pytest.mark.skipif(have_sentence_transformers(), reason="checks the behaviour without sentence-transformers")
def test_cli_embed_default_model_warns_and_falls_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = small_dataset(tmp_path / "ds", TEXTS)
    assert cli_main(["embed", str(folder), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "warning: sentence-transformers is not installed" in captured.err
    assert "(hashing-256)" in captured.out and (folder / "embeddings_hashing-256.npy").exists()
    assert cli_main(["embed", str(folder), "--backend", "sentence-transformers"]) == 2
    assert "cascal[embed]" in capsys.readouterr().err


def test_hashing_names_select_hashing_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_embedder("hashing-128").name == "hashing-128"
        assert get_embedder("all-MiniLM-L6-v2", backend="hashing").name == "hashing-256"


class FakeSentenceTransformer:
    """Stands in for sentence_transformers.SentenceTransformer: records calls, unnormalised output."""

    instances: list["FakeSentenceTransformer"] = []
    cached: set[str] = {"cached-model"}

    def __init__(self, name: str, device=None, local_files_only: bool = False) -> None:
        if local_files_only and name not in self.cached:
            raise OSError(f"{name} is not in the local cache")
        self.name, self.device, self.local_files_only = name, device, local_files_only
        self.calls: list[dict] = []
        FakeSentenceTransformer.instances.append(self)

    def get_sentence_embedding_dimension(self) -> int:
        return 3

    def encode(self, texts, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        self.calls.append(dict(n=len(texts), batch_size=batch_size, normalize=normalize_embeddings))
        return np.array([[len(t), t.count(" ") + 1.0, 2.0] for t in texts], dtype=np.float64)


@pytest.fixture
def fake_sentence_transformers(monkeypatch: pytest.MonkeyPatch):
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = FakeSentenceTransformer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    FakeSentenceTransformer.instances = []
    return module


def test_sentence_transformers_path_with_fake_module(fake_sentence_transformers) -> None:
    emb = get_embedder("cached-model", batch_size=7)
    assert isinstance(emb, SentenceTransformerEmbedder) and emb.name == "cached-model"
    assert FakeSentenceTransformer.instances == []  # loaded lazily
    x = emb.encode(["a b", "abcd"])
    (model,) = FakeSentenceTransformer.instances
    assert model.local_files_only is True  # a cached model loads offline
    assert model.calls == [dict(n=2, batch_size=7, normalize=True)]
    expected = np.array([[3, 2, 2], [4, 1, 2]], dtype=np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert x.dtype == np.float32
    assert load_embedder("cached-model").name == "cached-model"
    assert emb.encode([]).shape == (0, 3)


def test_sentence_transformers_uncached_model_loads_online(fake_sentence_transformers) -> None:
    emb = load_embedder("some/uncached-model")
    emb.encode(["x"])
    (model,) = FakeSentenceTransformer.instances
    assert model.name == "some/uncached-model" and model.local_files_only is False


def test_sentence_transformers_bad_output_is_an_error(fake_sentence_transformers, monkeypatch) -> None:
    monkeypatch.setattr(FakeSentenceTransformer, "encode", lambda self, texts, **kw: np.full((len(texts), 3), np.nan))
    with pytest.raises(EmbeddingError, match="NaN"):
        load_embedder("cached-model").encode(["x"])


def test_import_cascal_never_imports_sentence_transformers(tmp_path: Path) -> None:
    trap = tmp_path / "sentence_transformers"
    trap.mkdir()
    (trap / "__init__.py").write_text("raise RuntimeError('sentence_transformers imported eagerly')\n")
    code = (
        "import sys, cascal, cascal.embedding, cascal.generation, cascal.pipeline.filter, cascal.cli;"
        "cascal.cli.build_parser();"
        "cascal.embedding.load_embedder('hashing-16').encode(['x']);"
        "assert 'sentence_transformers' not in sys.modules"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------ datasets
def small_dataset(folder: Path, texts: list[str]) -> Path:
    n = len(texts)
    rm = ResponseMatrix(
        answers=np.zeros((n, 0), dtype=np.int8),
        n_options=np.full(n, 4),
        subjects=np.array(["s"] * n),
        model_names=[],
        gold=np.zeros(n, dtype=np.int8),
        questions=list(texts),
        options=[["a", "b", "c", "d"]] * n,
    )
    return save_dataset(rm, folder)


def test_embed_dataset_writes_and_reuses_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = small_dataset(tmp_path / "ds", TEXTS)
    x = embed_dataset(folder, "hashing-64")
    assert x.shape == (5, 64)
    np.testing.assert_array_equal(x, HashingEmbedder(64).encode(TEXTS))
    meta = json.loads((folder / "embeddings_hashing-64.json").read_text())
    assert meta["embedder"] == "hashing-64" and meta["n"] == 5 and meta["dim"] == 64
    loaded = load_dataset(folder)
    assert loaded.embedding_model == "hashing-64"
    np.testing.assert_array_equal(loaded.embeddings, x)

    def boom(self, texts):
        raise AssertionError("should have used the cached file")

    monkeypatch.setattr(HashingEmbedder, "encode", boom)
    np.testing.assert_array_equal(embed_dataset(folder, "hashing-64"), x)
    with pytest.raises(AssertionError, match="cached"):
        embed_dataset(folder, "hashing-64", force=True)


def test_embed_dataset_recomputes_when_questions_change(tmp_path: Path) -> None:
    folder = small_dataset(tmp_path / "ds", TEXTS)
    embed_dataset(folder, "hashing-32")
    small_dataset(folder, TEXTS[::-1])
    x = embed_dataset(folder, "hashing-32")
    np.testing.assert_array_equal(x, HashingEmbedder(32).encode(TEXTS[::-1]))
    assert not list(folder.glob(".*tmp"))


def test_embed_dataset_with_fake_sentence_transformers_batches(tmp_path: Path, fake_sentence_transformers) -> None:
    folder = small_dataset(tmp_path / "ds", TEXTS)
    x = embed_dataset(folder, "cached-model", batch_size=2)
    assert x.shape == (5, 3)
    assert [c["n"] for c in FakeSentenceTransformer.instances[0].calls] == [2, 2, 1]
    assert (folder / "embeddings_cached-model.npy").exists()


def test_cli_embed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = small_dataset(tmp_path / "ds", TEXTS)
    assert cli_main(["embed", str(folder), "--model", "hashing-16", "--no-progress"]) == 0
    assert "5 x 16 embeddings (hashing-16)" in capsys.readouterr().out
    assert cli_main(["embed", str(tmp_path / "missing"), "--model", "hashing-16"]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spoil",
    [
        lambda npy, meta: np.save(npy, np.array([["0.5"] * 8] * 5)),  # string rows are not cast to floats
        lambda npy, meta: meta.write_bytes(b"\xff\xfe"),  # not UTF-8
        lambda npy, meta: meta.write_text("[1, 2]"),  # JSON, but not an object
    ],
)
def test_embed_dataset_recomputes_an_unusable_cache(tmp_path: Path, spoil) -> None:
    folder = small_dataset(tmp_path / "ds", TEXTS)
    x = embed_dataset(folder, "hashing-8")
    spoil(folder / "embeddings_hashing-8.npy", folder / "embeddings_hashing-8.json")
    again = embed_dataset(folder, "hashing-8")
    assert again.dtype == np.float32
    np.testing.assert_array_equal(again, x)
    np.testing.assert_array_equal(load_dataset(folder).embeddings, x)


@pytest.mark.parametrize("name", ["hashing-65537", "hashing-100000000", "hashing-99999999999999999999"])
def test_hashing_dimension_is_capped(name):
    # uncapped, hashing-100000000 would ask for a 5.6 GiB projection at its first encode
    from cascal.embedding import MAX_HASHING_DIM, HashingEmbedder, get_embedder, load_embedder
    from cascal.errors import EmbeddingError

    value = name.split("-")[1]
    for make in (load_embedder, get_embedder, lambda n: get_embedder(n, backend="hashing")):
        with pytest.raises(EmbeddingError, match=rf"{name}'.* at most {MAX_HASHING_DIM}, got {value}"):
            make(name)
    with pytest.raises(EmbeddingError, match=rf"dim: .* at most {MAX_HASHING_DIM}, got {MAX_HASHING_DIM + 1}"):
        HashingEmbedder(MAX_HASHING_DIM + 1)
    assert load_embedder(f"hashing-{MAX_HASHING_DIM}").dim == MAX_HASHING_DIM


class _FilesEmbedder(Embedder):
    """An embedder made from files: its identity is its content hash, not its name."""

    def __init__(self, name: str, content_hash: str) -> None:
        self.name = name
        self.content_hash = content_hash

    def encode(self, texts):
        return np.ones((len(texts), 4), dtype=np.float32) / 2.0


def test_resolve_router_embedder_checks_names_or_files_hash():
    from cascal.embedding import resolve_router_embedder

    # no hash recorded: the name decides (hashing, and openai: at another URL)
    assert resolve_router_embedder("hashing-64", None).name == "hashing-64"
    with pytest.raises(EmbeddingError, match="'hashing-32' differs from the router's embedder 'hashing-64'"):
        resolve_router_embedder("hashing-64", None, "hashing-32")
    with pytest.raises(EmbeddingError, match="records no embedder"):
        resolve_router_embedder(None, None)
    # a hash recorded: any name with the same files is accepted, other files are refused naming both
    same = _FilesEmbedder("static:/elsewhere", "a" * 64)
    assert resolve_router_embedder("static:/trained", "a" * 64, same) is same
    with pytest.raises(EmbeddingError) as info:
        resolve_router_embedder("static:/trained", "a" * 64, _FilesEmbedder("static:/trained", "b" * 64))
    message = str(info.value)
    assert "static:/trained" in message and "a" * 64 in message and "b" * 64 in message
    with pytest.raises(EmbeddingError, match="files sha256 none"):
        resolve_router_embedder("static:/trained", "a" * 64, HashingEmbedder(16))


def test_static_names_need_an_existing_folder(tmp_path):
    with pytest.raises(EmbeddingError, match="no such static embedder folder"):
        load_embedder(f"static:{tmp_path / 'missing'}")
    with pytest.raises(EmbeddingError, match="no such static embedder folder"):
        get_embedder(str(tmp_path / "missing"), backend="static")
