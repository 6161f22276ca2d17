"""A static embedder folder and its inference: tokenize, gather token vectors, mean, normalise.

The folder (written by :func:`cascal.encoders.distill.build_static`) holds:

- ``model.safetensors``: the ``(vocab, d)`` float32 token table under the key ``embeddings``,
  each row already scaled by its token's weight (the layout the ``model2vec`` package reads);
- ``tokenizer.json``: the source model's tokenizer;
- ``config.json``: the ``model2vec`` settings (``normalize`` etc.);
- ``cascal_embedder.json``: the manifest: format and version, the embedder's name, ``dim``,
  ``vocab_size``, ``max_tokens``, the source model's name and the SHA-256 of its files, the build
  options, and the SHA-256 of every file above (:data:`HASHED_FILES`).

Loading checks everything: a missing or unreadable file, a manifest without a key, a file whose
SHA-256 differs from the manifest's (a corrupt or edited folder) or a table of the wrong shape
raises :class:`EmbeddingError` naming the file. :attr:`StaticModel.content_hash` is a SHA-256 over
the hashed files' digests: the identity a router file records.

Inference (:meth:`StaticModel.encode`): each text is cut to its first ``16 × max_tokens``
characters, tokenized without special tokens and cut to its first ``max_tokens`` tokens; unknown
tokens (and tokens beyond the table of a vocabulary-limited build) are dropped; the vector is the mean of the tokens' rows, L2-normalised. A text without any
known token (the empty string, only spaces or control characters) maps to the first basis vector,
so every row has unit norm. A text holding a lone UTF-16 surrogate is refused with
:class:`EmbeddingError` naming its index (it is not valid Unicode, as the gateway says with a 400).
Tokenizing runs on the calling thread: the ``tokenizers`` thread pool is switched off by setting
``TOKENIZERS_PARALLELISM=false`` when the folder is loaded, unless the environment already sets it
(the gateway always sets it). The tokenizer releases the GIL while it works. When the tokenizer's
normaliser is BERT's lower-casing one, ASCII texts are normalised by ``str.translate`` and
``str.lower`` and tokenized without it (the same ids, a third less time: the normaliser's
per-character bookkeeping is the costly part); other texts go through the whole tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from cascal.encoders.files import load_tokenizer, read_json, read_safetensors, sha256_file
from cascal.errors import EmbeddingError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HASHED_FILES",
    "MANIFEST",
    "StaticModel",
    "content_hash",
    "is_static_folder",
]

FORMAT_NAME = "cascal-static-embedder"
FORMAT_VERSION = 1
MANIFEST = "cascal_embedder.json"
TABLE = "model.safetensors"
TABLE_KEY = "embeddings"
#: The files whose SHA-256 the manifest records and :func:`content_hash` combines.
HASHED_FILES = (TABLE, "tokenizer.json", "config.json")
#: Characters of a text read per token kept (a 1 MB query costs what its first characters cost).
CHARS_PER_TOKEN = 16
MANIFEST_KEYS = ("format", "format_version", "name", "dim", "vocab_size", "max_tokens", "source", "build", "files")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: What BERT's normaliser (``BertNormalizer`` with ``clean_text`` and ``lowercase``) does to an
#: ASCII text, before lower-casing: control characters are removed (NUL included), tab, newline and
#: carriage return become spaces. (Its Chinese-character and accent handling leaves ASCII unchanged.)
#: Applied with ``str.translate`` and ``str.lower`` it gives the same text as the normaliser, without
#: the per-character alignment bookkeeping that makes the normaliser a third of the tokenizer's time
#: on English questions (docs/serve.md); tests/encoders/test_static.py checks the ids are the same.
_BERT_ASCII = {c: None for c in (*range(0, 9), 11, 12, *range(14, 32), 127)} | {9: 32, 10: 32, 13: 32}
#: Batches up to this many texts sum their token rows text by text (no sparse matrix).
_SMALL_BATCH = 8


def is_static_folder(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a folder holding a static embedder manifest."""
    return (Path(path) / MANIFEST).is_file()


def content_hash(file_digests: dict[str, str]) -> str:
    """The SHA-256 identifying a static embedder: over ``name=sha256`` lines of its hashed files."""
    lines = "".join(f"{name}={file_digests[name]}\n" for name in HASHED_FILES)
    return hashlib.sha256(lines.encode("ascii")).hexdigest()


class StaticModel:
    """A loaded static embedder folder (see the module docstring).

    Args:
        folder: the folder written by ``cascal embedder build``.

    Raises:
        EmbeddingError: the folder or a file is missing, unreadable, corrupt or inconsistent;
            the message names the file.
    """

    def __init__(self, folder: Union[str, Path]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise EmbeddingError(f"{self.folder}: no such static embedder folder")
        manifest_file = self.folder / MANIFEST
        manifest = read_json(manifest_file)
        self._check_manifest(manifest_file, manifest)
        self.manifest = manifest
        self.name = str(manifest["name"])
        self.dim = int(manifest["dim"])
        self.max_tokens = int(manifest["max_tokens"])
        digests = {}
        for file in HASHED_FILES:
            expected = manifest["files"][file]
            actual = sha256_file(self.folder / file)
            if actual != expected:
                raise EmbeddingError(
                    f"{self.folder / file}: SHA-256 {actual} differs from {expected} in {MANIFEST} "
                    "(a corrupt or modified embedder folder; rebuild it with `cascal embedder build`)"
                )
            digests[file] = actual
        self.content_hash = content_hash(digests)
        table_file = self.folder / TABLE
        tensors = read_safetensors(table_file)
        table = tensors.get(TABLE_KEY)
        vocab = int(manifest["vocab_size"])
        if table is None or table.shape != (vocab, self.dim) or table.dtype != np.float32:
            got = "nothing" if table is None else f"{table.dtype}{table.shape}"
            raise EmbeddingError(
                f"{table_file}: tensor {TABLE_KEY!r} should be float32({vocab}, {self.dim}), got {got}"
            )
        if not np.isfinite(table).all():
            raise EmbeddingError(f"{table_file}: tensor {TABLE_KEY!r} holds NaN or infinite values")
        self.table = table
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.tokenizer = load_tokenizer(self.folder / "tokenizer.json", self.max_tokens)
        self._max_chars = CHARS_PER_TOKEN * self.max_tokens
        unk = self.tokenizer.token_to_id(str(manifest.get("unk_token") or "[UNK]"))
        self._unk = -1 if unk is None else int(unk)
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self._ascii_encode_batch = self._ascii_path(self.folder / "tokenizer.json")

    def _ascii_path(self, path: Path) -> Optional[Any]:
        """The batch encoder of a copy of the tokenizer without its normaliser, when the normaliser
        is BERT's lower-casing one (see :data:`_BERT_ASCII`), else ``None``."""
        normalizer = read_json(path).get("normalizer")
        if not isinstance(normalizer, dict) or normalizer.get("type") != "BertNormalizer":
            return None
        if normalizer.get("clean_text") is not True or normalizer.get("lowercase") is not True:
            return None
        bare = load_tokenizer(path, self.max_tokens)
        bare.normalizer = None
        return getattr(bare, "encode_batch_fast", bare.encode_batch)

    def _encode(self, texts: list[str]) -> list[Any]:
        """The tokenizer's encodings of ``texts`` (already cut), in order: ASCII texts through the
        bare tokenizer after :data:`_BERT_ASCII` (when the normaliser allows), the others through the
        full tokenizer."""
        fast = self._ascii_encode_batch
        if fast is None:
            return list(self._encode_batch(texts, add_special_tokens=False))
        plain = [text.isascii() for text in texts]
        if all(plain):
            return list(fast([t.translate(_BERT_ASCII).lower() for t in texts], add_special_tokens=False))
        ascii_rows = [i for i, is_ascii in enumerate(plain) if is_ascii]
        others = [i for i, is_ascii in enumerate(plain) if not is_ascii]
        out: list[Any] = [None] * len(texts)
        if ascii_rows:
            pre = [texts[i].translate(_BERT_ASCII).lower() for i in ascii_rows]
            for i, encoding in zip(ascii_rows, fast(pre, add_special_tokens=False)):
                out[i] = encoding
        for i, encoding in zip(others, self._encode_batch([texts[i] for i in others], add_special_tokens=False)):
            out[i] = encoding
        return out

    @staticmethod
    def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
        missing = [k for k in MANIFEST_KEYS if k not in manifest]
        if missing:
            raise EmbeddingError(f"{path}: lacks key(s) {missing}")
        if manifest["format"] != FORMAT_NAME:
            raise EmbeddingError(f"{path}: format is {manifest['format']!r}, expected {FORMAT_NAME!r}")
        version = manifest["format_version"]
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise EmbeddingError(
                f"{path}: format_version {version!r} is not one this cascal reads (1..{FORMAT_VERSION})"
            )
        for key in ("dim", "vocab_size", "max_tokens"):
            value = manifest[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EmbeddingError(f"{path}: {key} must be a positive integer, got {value!r}")
        files = manifest["files"]
        if not isinstance(files, dict) or any(not isinstance(files.get(f), str) for f in HASHED_FILES):
            raise EmbeddingError(f"{path}: files must map each of {list(HASHED_FILES)} to its SHA-256")
        if not isinstance(manifest["name"], str) or not manifest["name"]:
            raise EmbeddingError(f"{path}: name must be a non-empty string")

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The kept token ids of each text (see the module docstring); refuses lone surrogates."""
        cut = []
        for i, text in enumerate(texts):
            text = text[: self._max_chars]
            if _SURROGATE.search(text):
                raise EmbeddingError(f"texts[{i}]: contains a lone UTF-16 surrogate, which is not valid Unicode text")
            cut.append(text)
        encodings = self._encode(cut)
        unk, vocab = self._unk, self.table.shape[0]
        return [[t for t in e.ids if t != unk and t < vocab] for e in encodings]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit-norm vectors."""
        ids = self.token_ids(texts)
        if len(ids) <= _SMALL_BATCH:  # a few texts: a gather per text beats building a sparse matrix
            out = np.zeros((len(ids), self.dim), dtype=np.float32)
            for i, row in enumerate(ids):
                if row:
                    out[i] = self.table[row].sum(axis=0)
        else:
            from scipy.sparse import csr_matrix

            counts = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=int(counts.sum()))
            indptr = np.concatenate(([0], np.cumsum(counts)))
            # one sparse (texts x vocabulary) count matrix times the table: gather and sum in one pass
            shape = (len(ids), len(self.table))
            counts_matrix = csr_matrix((np.ones(len(flat), dtype=np.float32), flat, indptr), shape=shape)
            out = np.asarray(counts_matrix @ self.table, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1)
        empty = norms == 0
        out[empty, 0] = 1.0
        norms[empty] = 1.0
        out /= norms[:, None]
        return out

    def describe(self) -> str:
        """One line: name, dimension, vocabulary and source model."""
        source = self.manifest.get("source", {})
        model = source.get("model") if isinstance(source, dict) else None
        return f"{self.name}: {self.dim} dims, {self.table.shape[0]} tokens, from {model or 'an unnamed model'}"


def manifest_json(manifest: dict[str, Any]) -> str:
    """The manifest as written to :data:`MANIFEST`."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"
