"""The numpy forward pass of MiniLM against the sentence-transformers embeddings shipped with the
real MMLU-Pro data, and its refusals of folders it cannot run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cascal.encoders.bert import BertEncoder
from cascal.errors import EmbeddingError


@pytest.fixture(scope="module")
def encoder(minilm_dir):
    # batches of 4 (default 32): the 17 real questions then run as 5 length-sorted batches instead of
    # one padded to the longest question's 256 tokens, about 4x less work, and the batch-scatter path
    # of encode_ids is exercised; test_batching_does_not_change_a_vector still pads in one batch
    return BertEncoder(minilm_dir, batch_size=4)


def test_forward_matches_sentence_transformers_on_real_questions(encoder, data_dir):
    data = data_dir
    reference = np.load(data / "embeddings_all-MiniLM-L6-v2.npy", mmap_mode="r")
    with open(data / "questions.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["question"] for line in fh]
    rows = np.random.default_rng(0).choice(len(texts), 16, replace=False)
    rows = np.append(rows, int(np.argmax([len(t) for t in texts])))  # the longest: cut at 256 tokens
    vectors = encoder.encode([texts[i] for i in rows])
    cosine = np.sum(vectors * reference[rows], axis=1)
    assert cosine.min() >= 0.9999, cosine.min()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_a_vector(encoder):
    texts = ["short", "a somewhat longer sentence about the capital of France", ""]
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors: no such file"),
        (
            lambda d: (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"),
            "model.safetensors",
        ),
        (lambda d: (d / "config.json").write_text("{not json", encoding="utf-8"), "config.json: not valid JSON"),
        (lambda d: (d / "tokenizer.json").write_text("{}", encoding="utf-8"), "tokenizer.json: not a readable"),
        (
            lambda d: (d / "1_Pooling" / "config.json").write_text(
                '{"pooling_mode_cls_token": true}', encoding="utf-8"
            ),
            "only mean pooling",
        ),
    ],
)
def test_a_broken_folder_is_refused_naming_the_file(minilm_dir, tmp_path, damage, named):
    folder = tmp_path / "model"
    shutil.copytree(minilm_dir, folder)
    damage(folder)
    with pytest.raises(EmbeddingError, match=named):
        BertEncoder(folder)
