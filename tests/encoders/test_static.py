"""The static embedder folder: what a build writes, defined results for awkward texts, and clear
errors for a missing or corrupt folder."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascal.embedding import StaticEmbedder, get_embedder, load_embedder
from cascal.encoders.static import CHARS_PER_TOKEN, MANIFEST, StaticModel
from cascal.errors import EmbeddingError


@pytest.fixture(scope="module")
def embedder(static_embedder_dir) -> StaticEmbedder:
    return StaticEmbedder(static_embedder_dir)


def test_the_build_writes_a_self_describing_folder(static_embedder_dir, embedder, minilm_dir):
    manifest = json.loads((static_embedder_dir / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["name"] == "static-all-MiniLM-L6-v2-d256" and manifest["dim"] == 256
    assert manifest["source"]["model"] == "all-MiniLM-L6-v2"
    assert set(manifest["source"]["files"]) >= {"model.safetensors", "tokenizer.json", "config.json"}
    assert 0.5 < manifest["build"]["pca_variance_kept"] <= 1.0
    assert embedder.name == f"static:{static_embedder_dir.resolve()}"
    assert len(embedder.content_hash) == 64
    # a plain path to the folder and the static: name give the same embedder
    assert get_embedder(str(static_embedder_dir)).name == embedder.name
    assert load_embedder(embedder.name).content_hash == embedder.content_hash


def test_meaning_survives_distillation(embedder):
    a, b, c = embedder.encode(
        [
            "What is the derivative of x squared with respect to x?",
            "Differentiate the function x^2.",
            "Which court ruled on the contract dispute between the two companies?",
        ]
    )
    assert float(a @ b) > float(a @ c)


def test_awkward_texts_give_defined_unit_vectors(embedder):
    texts = ["", "   ", "\x00\x01\x07\x1b", "hello world", "héllo wörld ✓ 🤖", "x" * 1_000_000]
    vectors = embedder.encode(texts)
    assert vectors.shape == (len(texts), 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    first_axis = np.eye(256, dtype=np.float32)[0]
    for row in (0, 1, 2):  # no token: the first basis vector
        assert np.array_equal(vectors[row], first_axis)
    assert np.array_equal(embedder.encode(["hello\x00 world"]), embedder.encode(["hello world"]))


def test_a_huge_text_costs_what_its_head_costs(embedder):
    head = "the quick brown fox jumps over the lazy dog " * 200
    big = head + "zebra " * 200_000  # 1.2 MB
    cut = CHARS_PER_TOKEN * embedder.model.max_tokens
    start = time.perf_counter()
    vector = embedder.encode([big])
    assert time.perf_counter() - start < 5.0  # generous: a busy machine; the whole text would take far longer
    assert np.array_equal(vector, embedder.encode([big[:cut]]))


def test_a_lone_surrogate_is_refused_naming_the_text(embedder):
    with pytest.raises(EmbeddingError, match=r"texts\[1\]: contains a lone UTF-16 surrogate"):
        embedder.encode(["fine", "bad \udc00 text"])
    with pytest.raises(EmbeddingError, match="expected str"):
        embedder.encode(["fine", None])  # type: ignore[list-item]


def test_ten_thousand_texts_in_one_call(embedder):
    texts = [f"question number {i} about topic {i % 37}" for i in range(10_000)]
    vectors = embedder.encode(texts)
    assert vectors.shape == (10_000, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for i in (0, 4321, 9999):
        assert np.array_equal(vectors[i], embedder.encode([texts[i]])[0])


def _rewrite_manifest(folder, **changes):
    path = folder / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: shutil.rmtree(d), "no such static embedder folder"),
        (lambda d: (d / MANIFEST).unlink(), f"{MANIFEST}: no such file"),
        (lambda d: (d / MANIFEST).write_text("[1, 2", encoding="utf-8"), f"{MANIFEST}: not valid JSON"),
        (lambda d: _rewrite_manifest(d, format_version=99), "format_version 99"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json: no such file"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "model.safetensors: SHA-256 .* differs"),
        (lambda d: (d / "config.json").write_text("{}", encoding="utf-8"), "config.json: SHA-256 .* differs"),
    ],
)
def test_a_missing_or_corrupt_folder_names_the_file(static_embedder_dir, tmp_path, damage, named):
    folder = tmp_path / "emb"
    shutil.copytree(static_embedder_dir, folder)
    damage(folder)
    with pytest.raises(EmbeddingError, match=named):
        StaticModel(folder)
    with pytest.raises(EmbeddingError, match=named):
        load_embedder(f"static:{folder}")


ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.one_of(ASCII, st.text(max_size=60).filter(lambda t: not _surrogate(t))), max_size=6))
def test_the_ascii_shortcut_gives_the_full_tokenizers_ids(embedder, texts):
    """ASCII texts skip the tokenizer's normaliser (``_BERT_ASCII`` + ``lower``): same ids, in order,
    as the tokenizer with its normaliser, ASCII and other texts mixed in one batch."""
    model = embedder.model
    assert model._ascii_encode_batch is not None  # MiniLM's BertNormalizer takes the shortcut
    full = [e.ids for e in model.tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert [e.ids for e in model._encode(texts)] == full


def test_the_ascii_shortcut_on_control_characters_and_case(embedder):
    texts = ["Tab\there\r\nNew\x0bline\x0cFeed\x1f\x7fEND", "\x00\x01 ONLY controls \x08", "MiXeD CaSe Ünïcode"]
    full = [e.ids for e in embedder.model.tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert [e.ids for e in embedder.model._encode(texts)] == full
    assert np.array_equal(embedder.encode(texts), np.vstack([embedder.encode([t]) for t in texts]))


def _surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)
