"""Question embeddings: sentence-transformers when installed, a stateless hashing embedder otherwise.

A router stores the *name* of the embedder its training embeddings came from, and must embed new
queries identically at route time: :func:`load_embedder` turns that name back into the same embedder.

Backends:

* ``sentence-transformers`` (optional extra: ``pip install 'cascal[embed]'``): any model name or
  local path, e.g. ``all-MiniLM-L6-v2``. Imported lazily, never at ``import cascal``. A model already
  in the local cache is loaded without touching the network; ``encode`` runs batched with
  ``normalize_embeddings=True``. The embedder's name is the model name as given.
* ``hashing`` (no extra dependency, name ``hashing-<d>``, default ``hashing-256``): scikit-learn's
  ``HashingVectorizer`` on lower-cased word unigrams and bigrams (words = runs of word characters,
  single characters included; 2**20 buckets, no sign flipping),
  sublinear term frequency ``1 + log(tf)``, row L2 normalisation, then a Rademacher random
  projection to ``d`` dimensions whose ±1 entries are the bits of SplitMix64 hashes of
  (seed, bucket, output word), and a final L2 normalisation (a text without any word maps to
  the first basis vector, so every row has unit norm). Nothing is fitted and nothing is
  drawn from a random-number stream, so the name alone reproduces the embedder exactly (on any
  machine and numpy version). It captures shared vocabulary only, not meaning: a fallback for when
  torch is unavailable, not a substitute for a sentence encoder. ``d`` is at most
  :data:`MAX_HASHING_DIM` (65,536): the projection of a batch holds up to 16,384 × ``d`` float64
  entries, so a larger ``d`` (``hashing-100000000`` would ask for gigabytes at the first route) is
  refused with :class:`EmbeddingError` naming the value, by :class:`HashingEmbedder`,
  :func:`get_embedder` and :func:`load_embedder` (and a router file naming such an embedder is
  refused when it is loaded).

* ``openai`` (no extra dependency: the ``openai`` client): an OpenAI-compatible ``/v1/embeddings``
  endpoint, named ``openai:<model>@<base_url>`` (e.g. ``openai:text-embedding-3-small@http://127.0.0.1:8001/v1``),
  so the name alone says which model at which endpoint. The API key is read from the environment
  variable ``CASCAL_EMBEDDINGS_API_KEY`` (``"EMPTY"`` when unset). Texts go in batches of
  ``batch_size``; rows come back in input order (by the reply's ``index``) and are L2-normalised.

* ``static`` (the optional extra ``cascal[static]``: ``tokenizers`` and ``safetensors``, no torch):
  a static embedder folder built by ``cascal embedder build`` from a sentence-transformers model
  (the Model2Vec method, :mod:`cascal.encoders`): a tokenizer, a table lookup and a mean, about a
  thousand times cheaper than the encoder it was distilled from. Named ``static:<folder>`` with the
  folder's absolute path (a folder holding ``cascal_embedder.json`` may also be given as a plain
  path: it gets that name). Its :attr:`StaticEmbedder.content_hash` (a SHA-256 of its files) is
  what a router records besides the name: see :func:`resolve_router_embedder`.

With ``backend="auto"`` a name of the form ``hashing-<d>`` selects the hashing embedder, a name
starting with ``openai:`` the endpoint embedder, ``static:<folder>`` or a folder holding a static
embedder manifest the static embedder; any other
name selects sentence-transformers and, if that package is missing, falls back to ``hashing-256``
with a warning (the returned embedder's name says which one was used).

Embedding a dataset folder (with its cache file) is the pipeline stage :mod:`cascal.pipeline.embed`.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from cascal.errors import EmbedderFallbackWarning, EmbeddingError
from cascal.vectors import unit_rows

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_HASHING_DIM = 256
#: Largest output dimension of the hashing embedder (``hashing-<d>``).
MAX_HASHING_DIM = 65_536
HASHING_FEATURES = 2**20
HASHING_SEED = 0x5EED_CA5CA1
BACKENDS = ("auto", "sentence-transformers", "hashing", "openai", "static")
STATIC_PREFIX = "static:"
_PROJECTION_BLOCK = 16384  # hashed features projected at once
_HASHING_NAME = re.compile(r"^hashing-([0-9]+)$")
_OPENAI_NAME = re.compile(r"^openai:(?P<model>[^@\s]+)@(?P<url>https?://\S+)$")
#: environment variable holding the API key of the ``openai:`` embedding endpoint
EMBEDDINGS_API_KEY_ENV = "CASCAL_EMBEDDINGS_API_KEY"

PathLike = Union[str, Path]

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "OpenAIEmbeddingsEmbedder",
    "StaticEmbedder",
    "EmbeddingError",
    "EMBEDDINGS_API_KEY_ENV",
    "get_embedder",
    "load_embedder",
    "check_embedder_identity",
    "parse_openai_name",
    "resolve_router_embedder",
    "static_folder",
    "embed_texts",
    "texts_digest",
    "DEFAULT_MODEL",
    "MAX_HASHING_DIM",
    "hashing_dim",
]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise EmbeddingError("texts: expected a sequence of strings, got a single str")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise EmbeddingError(f"texts[{i}]: expected str, got {type(text).__name__}")
    return out


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return unit_rows(x).astype(np.float32, copy=False)


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors; :attr:`name` reproduces it via :func:`load_embedder`.

    :attr:`content_hash` is the SHA-256 of the files the embedder computes with, for embedders made
    from files (the static embedder), else ``None``.
    """

    name: str
    content_hash: Optional[str] = None

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), d)`` float32 array of unit-norm rows."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ------------------------------------------------------------------------------ hashing backend
def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 (Steele, Lea & Flood 2014) output for each uint64 state in ``x`` (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def rademacher_rows(features: np.ndarray, dim: int, seed: int = HASHING_SEED) -> np.ndarray:
    """The rows of the ``(HASHING_FEATURES, dim)`` ±1 projection matrix for the given bucket indices.

    With ``W = ceil(dim / 64)`` words per bucket, entry ``(j, k)`` is ``+1`` if bit ``k % 64`` of
    ``splitmix64(seed * 2**32 + j * W + k // 64)`` is set, else ``-1``. Computed on demand, so only
    the buckets a batch uses are materialised.
    """
    words = -(-dim // 64)
    feats = np.asarray(features, dtype=np.uint64)[:, None]
    word_index = np.arange(words, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        states = (np.uint64(seed) << np.uint64(32)) + feats * np.uint64(words) + word_index
        hashed = splitmix64(states).astype("<u8")  # little-endian bytes: bit b of byte i is bit 8i+b
    bits = np.unpackbits(hashed.view(np.uint8).reshape(len(feats), words * 8), axis=1, bitorder="little")
    return bits[:, :dim].astype(np.float32) * 2.0 - 1.0


class HashingEmbedder(Embedder):
    """Stateless word 1–2-gram hashing + sublinear tf + Rademacher projection (see the module docstring).

    Args:
        dim: output dimension (2 to :data:`MAX_HASHING_DIM`).

    Raises:
        EmbeddingError: ``dim`` is not an integer in that range (the message names the value).
    """

    def __init__(self, dim: int = DEFAULT_HASHING_DIM) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
            raise EmbeddingError(f"dim: the hashing embedder needs an integer dimension >= 2, got {dim!r}")
        if dim > MAX_HASHING_DIM:
            raise EmbeddingError(f"dim: the hashing embedder's dimension is at most {MAX_HASHING_DIM}, got {int(dim)}")
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"
        self._vectorizer = HashingVectorizer(
            n_features=HASHING_FEATURES,
            ngram_range=(1, 2),
            lowercase=True,
            token_pattern=r"(?u)\b\w+\b",
            alternate_sign=False,
            norm=None,
            dtype=np.float64,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = self._vectorizer.transform(texts).tocsr()
        counts.sum_duplicates()
        counts.data = 1.0 + np.log(counts.data)
        row_norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        counts = counts.multiply(1.0 / np.where(row_norms > 0, row_norms, 1.0)[:, None]).tocsr()
        projected = np.zeros((len(texts), self.dim), dtype=np.float64)
        used, local = np.unique(counts.indices, return_inverse=True)
        if used.size:
            compact = counts.__class__(
                (counts.data, local.ravel(), counts.indptr), shape=(len(texts), used.size)
            ).tocsc()
            for start in range(0, used.size, _PROJECTION_BLOCK):  # bounded memory for big batches
                stop = min(start + _PROJECTION_BLOCK, used.size)
                projected += compact[:, start:stop] @ rademacher_rows(used[start:stop], self.dim).astype(np.float64)
        empty = np.linalg.norm(projected, axis=1) == 0
        projected[empty, 0] = 1.0  # texts without any word: one fixed unit vector
        return _l2_normalise(projected)


# ------------------------------------------------------------------------------ sentence-transformers
def _import_sentence_transformers() -> Any:
    try:
        return importlib.import_module("sentence_transformers")
    except ImportError as exc:
        raise EmbeddingError(
            "the sentence-transformers backend needs the optional extra: pip install 'cascal[embed]'"
        ) from exc


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model (any hub name or local path), loaded lazily on first use.

    Args:
        model: model name or local path; also the embedder's :attr:`name`.
        batch_size: texts per forward pass.
        device: torch device string, or ``None`` for the library's choice.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, device: Optional[str] = None) -> None:
        if not isinstance(model, str) or not model.strip():
            raise EmbeddingError(f"model: expected a model name or path, got {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EmbeddingError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
        self.name = model
        self.batch_size = batch_size
        self.device = device
        self._module = _import_sentence_transformers()
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            cls = self._module.SentenceTransformer
            try:
                # A locally cached model loads without any network access.
                self._model = cls(self.name, device=self.device, local_files_only=True)
            except TypeError:  # very old sentence-transformers without local_files_only
                self._model = cls(self.name, device=self.device)
            except (OSError, ValueError):  # not cached yet: let the library fetch it
                self._model = cls(self.name, device=self.device)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            model = self._load()
            dim = int(model.get_sentence_embedding_dimension() or 0)
            return np.zeros((0, dim), dtype=np.float32)
        vectors = self._load().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EmbeddingError(
                f"model {self.name!r}: expected {len(texts)} embedding rows, got an array of shape {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError(f"model {self.name!r}: returned NaN or infinite embeddings")
        return _l2_normalise(vectors)


# ------------------------------------------------------------------------------ OpenAI-compatible endpoint
class OpenAIEmbeddingsEmbedder(Embedder):
    """An OpenAI-compatible ``/v1/embeddings`` endpoint, named ``openai:<model>@<base_url>``.

    Args:
        model: the model id sent in the request.
        base_url: the endpoint root, e.g. ``http://127.0.0.1:8001/v1`` (``http`` or ``https``).
        batch_size: texts per request.
        timeout: seconds per request.
        api_key: the key to send; default the variable ``CASCAL_EMBEDDINGS_API_KEY``, else ``"EMPTY"``.
            It is never part of the name, a message or a log.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        batch_size: int = 256,
        timeout: float = 60.0,
        api_key: Optional[str] = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip() or "@" in model or any(c.isspace() for c in model):
            raise EmbeddingError(f"model: expected a model id without '@' or spaces, got {model!r}")
        if not isinstance(base_url, str) or not re.match(r"^https?://\S+$", base_url):
            raise EmbeddingError(f"base_url: expected an http(s) URL, got {base_url!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EmbeddingError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
        import os

        import openai

        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = f"openai:{self.model}@{self.base_url}"
        self.batch_size = batch_size
        key = api_key if api_key is not None else os.environ.get(EMBEDDINGS_API_KEY_ENV) or "EMPTY"
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=2)
        self._dim: Optional[int] = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        parts = [self._request(texts[s : s + self.batch_size]) for s in range(0, len(texts), self.batch_size)]
        vectors = np.vstack(parts)
        self._dim = int(vectors.shape[1])
        return _l2_normalise(vectors)

    def _request(self, texts: list[str]) -> np.ndarray:
        import openai

        try:
            reply = self._client.embeddings.create(model=self.model, input=texts, encoding_format="float")
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"embedder {self.name}: request failed: {type(exc).__name__}: {exc}") from None
        rows = sorted(reply.data, key=lambda item: item.index)
        if len(rows) != len(texts) or [r.index for r in rows] != list(range(len(texts))):
            raise EmbeddingError(f"embedder {self.name}: expected {len(texts)} embeddings, got {len(rows)}")
        try:
            vectors = np.asarray([r.embedding for r in rows], dtype=np.float64)
        except (TypeError, ValueError):
            problem = "the embeddings are not equal-length lists of numbers"
            raise EmbeddingError(f"embedder {self.name}: {problem}") from None
        if vectors.ndim != 2 or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
            raise EmbeddingError(f"embedder {self.name}: returned empty, ragged, NaN or infinite embeddings")
        if (np.linalg.norm(vectors, axis=1) == 0).any():
            raise EmbeddingError(f"embedder {self.name}: returned an all-zero embedding")
        return vectors


# ------------------------------------------------------------------------------ static embedder folders
class StaticEmbedder(Embedder):
    """A static embedder folder built by ``cascal embedder build`` (see :mod:`cascal.encoders.static`).

    Args:
        folder: the folder holding ``cascal_embedder.json``.

    Raises:
        EmbeddingError: the folder or one of its files is missing, unreadable or corrupt (the
            message names the file), or ``tokenizers``/``safetensors`` are not installed.
    """

    def __init__(self, folder: PathLike) -> None:
        from cascal.encoders.static import StaticModel

        self.folder = Path(folder).expanduser().resolve()
        self.model = StaticModel(self.folder)
        self.name = f"{STATIC_PREFIX}{self.folder}"
        self.content_hash = self.model.content_hash
        self.dim = self.model.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(_check_texts(texts))


def static_folder(name: str) -> Optional[str]:
    """The folder of a static embedder name or path: ``static:<folder>``, or a path to a folder
    holding a static embedder manifest; ``None`` for any other name."""
    if not isinstance(name, str):
        return None
    if name.startswith(STATIC_PREFIX):
        return name[len(STATIC_PREFIX) :]
    from cascal.encoders.static import is_static_folder

    return name if is_static_folder(name) else None


def parse_openai_name(name: str) -> Optional[tuple[str, str]]:
    """``(model, base_url)`` of an ``openai:<model>@<base_url>`` embedder name, else ``None``."""
    match = _OPENAI_NAME.match(name) if isinstance(name, str) else None
    return (match.group("model"), match.group("url").rstrip("/")) if match else None


# ------------------------------------------------------------------------------ choosing one
def hashing_dim(name: str) -> Optional[int]:
    """The dimension ``d`` of a hashing embedder name ``hashing-<d>``, ``None`` for any other name.

    Raises:
        EmbeddingError: ``d`` is below 2 or above :data:`MAX_HASHING_DIM`; the message names the value.
    """
    match = _HASHING_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        return None
    digits = match.group(1)
    if len(digits) > 12 or int(digits) > MAX_HASHING_DIM:
        raise EmbeddingError(f"{name!r}: the hashing embedder's dimension is at most {MAX_HASHING_DIM}, got {digits}")
    dim = int(digits)
    if dim < 2:
        raise EmbeddingError(f"{name!r}: the hashing embedder needs a dimension >= 2, got {dim}")
    return dim


def get_embedder(model: str = DEFAULT_MODEL, backend: str = "auto", *, batch_size: int = 64) -> Embedder:
    """The embedder to *create* embeddings with (``cascal embed``).

    Args:
        model: a sentence-transformers model name or path, ``hashing-<d>``, ``openai:<model>@<base_url>``,
            or ``static:<folder>`` (or the path of a static embedder folder).
        backend: ``"auto"``, ``"sentence-transformers"``, ``"hashing"``, ``"openai"`` (which needs
            an ``openai:`` name) or ``"static"`` (a static embedder folder). ``"hashing"`` with a
            non-hashing ``model`` gives ``hashing-256``. ``"auto"`` falls back to ``hashing-256``
            with a warning when sentence-transformers is not installed.
        batch_size: batch size of the sentence-transformers backend.
    """
    if backend not in BACKENDS:
        raise EmbeddingError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not isinstance(model, str) or not model.strip():
        raise EmbeddingError(f"model: expected a model name or path, got {model!r}")
    folder = static_folder(model)
    if backend == "static" or (backend == "auto" and folder is not None):
        return StaticEmbedder(folder if folder is not None else model)
    endpoint = parse_openai_name(model)
    if backend == "openai" or (backend == "auto" and model.startswith("openai:")):
        if endpoint is None:
            raise EmbeddingError(f"model: the openai backend needs a name openai:<model>@<base_url>, got {model!r}")
        return OpenAIEmbeddingsEmbedder(*endpoint, batch_size=batch_size)
    dim = hashing_dim(model)
    if backend == "hashing":
        return HashingEmbedder(dim or DEFAULT_HASHING_DIM)
    if dim is not None:
        if backend == "sentence-transformers":
            raise EmbeddingError(f"model: {model!r} names the hashing embedder, not a sentence-transformers model")
        return HashingEmbedder(dim)
    if backend == "sentence-transformers":
        return SentenceTransformerEmbedder(model, batch_size=batch_size)
    try:
        return SentenceTransformerEmbedder(model, batch_size=batch_size)
    except EmbeddingError:
        warnings.warn(
            f"sentence-transformers is not installed; embedding with the hashing fallback "
            f"'hashing-{DEFAULT_HASHING_DIM}' instead of {model!r} (pip install 'cascal[embed]' for real sentence embeddings)",
            EmbedderFallbackWarning,
            stacklevel=2,
        )
        return HashingEmbedder(DEFAULT_HASHING_DIM)


def load_embedder(name: str, *, batch_size: int = 64) -> Embedder:
    """The embedder whose :attr:`Embedder.name` is ``name`` (route time): ``hashing-<d>``,
    ``openai:<model>@<base_url>``, ``static:<folder>`` or a sentence-transformers model. Never falls back: a missing
    package raises :class:`EmbeddingError`,
    because other embeddings would not match the router's training embeddings."""
    if not isinstance(name, str) or not name.strip():
        raise EmbeddingError(f"name: expected an embedder name, got {name!r}")
    dim = hashing_dim(name)
    if dim is not None:
        return HashingEmbedder(dim)
    folder = static_folder(name)
    if folder is not None:
        return StaticEmbedder(folder)
    if name.startswith("openai:"):
        endpoint = parse_openai_name(name)
        if endpoint is None:
            raise EmbeddingError(f"name: expected openai:<model>@<base_url>, got {name!r}")
        return OpenAIEmbeddingsEmbedder(*endpoint, batch_size=batch_size)
    return SentenceTransformerEmbedder(name, batch_size=batch_size)


def resolve_router_embedder(
    recorded: Optional[str], recorded_hash: Optional[str], embedder: Union[Embedder, str, None] = None
) -> Embedder:
    """The embedder to embed a router's queries with: ``embedder`` (an :class:`Embedder` or a
    name), else the one the router records (``recorded``), checked against the router.

    A router that records a content hash (``recorded_hash``, the SHA-256 of its embedder's files)
    accepts only an embedder with that hash, whatever its name (a static embedder folder may be
    moved or copied); one without a hash (written before hashes were recorded, or with an embedder
    not made from files) accepts the recorded name only, or an ``openai:`` embedder of the same
    model at another URL.

    Raises:
        EmbeddingError: the router records no embedder and none is given, the embedder cannot be
            loaded, or it differs from the router's; the message names both.
    """
    if embedder is None:
        if not recorded:
            raise EmbeddingError("the router records no embedder: pass the embedder of its training questions")
        embedder = recorded
    if not isinstance(embedder, Embedder):
        given = str(embedder)
        if not recorded_hash:
            check_embedder_identity(recorded, None, given)  # before loading: a wrong name costs nothing
        embedder = load_embedder(given)
    check_embedder_identity(recorded, recorded_hash, embedder.name, embedder.content_hash)
    return embedder


def check_embedder_identity(
    recorded: Optional[str], recorded_hash: Optional[str], given: str, given_hash: Optional[str] = None
) -> None:
    """Refuse the embedder ``given`` (files hash ``given_hash``) for a router that records
    ``recorded`` (files hash ``recorded_hash``): with a recorded hash the hashes must be equal,
    whatever the names; without one the names must be equal, or be ``openai:`` names of the same
    model (the endpoint may move).

    Raises:
        EmbeddingError: the embedders differ; the message names both (and both hashes).
    """
    if recorded_hash:
        if given_hash != recorded_hash:
            raise EmbeddingError(
                f"embedder {given!r} (files sha256 {given_hash or 'none'}) differs from the router's embedder "
                f"{recorded!r} (files sha256 {recorded_hash}): queries must be embedded like the training "
                "questions; use the embedder folder the router was trained with, or retrain"
            )
        return
    if not recorded or recorded == given:
        return
    a, b = parse_openai_name(recorded), parse_openai_name(given)
    if a is not None and b is not None and a[0] == b[0]:
        return
    raise EmbeddingError(
        f"embedder {given!r} differs from the router's embedder {recorded!r}: queries must be embedded "
        "like the training questions"
    )


# ------------------------------------------------------------------------------ texts
def texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def embed_texts(
    embedder: Embedder, texts: Sequence[str], *, batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """``embedder.encode`` over ``texts`` in batches of ``batch_size`` (with a tqdm bar if ``progress``)."""
    texts = _check_texts(texts)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EmbeddingError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"embed ({embedder.name})", unit="batch")
    parts = [embedder.encode(texts[s : s + batch_size]) for s in starts]
    if not parts:
        return embedder.encode([])
    return np.vstack(parts).astype(np.float32, copy=False)
