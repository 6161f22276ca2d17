"""Building a static embedder folder from a sentence-transformers model folder (the Model2Vec method).

:func:`build_static` runs, without torch and without any text corpus:

1. every vocabulary token ``t`` through the source encoder (:class:`cascal.encoders.bert.BertEncoder`)
   as the one-token sentence ``[CLS] t [SEP]``, giving its sentence-space vector;
2. PCA of those vectors (centred, top ``dim`` principal directions, no whitening);
3. a rank weight per token: with token id ``i`` read as the Zipf rank ``r = i + 1`` of a vocabulary
   stored most frequent first, the token's probability is taken as ``p = 1 / (r · H_V)`` (``H_V`` the
   ``V``-th harmonic number) and its weight is the SIF weight ``a / (a + p)`` (``a`` = ``sif``), so
   frequent tokens count little; the weight is folded into the token's row.

The folder it writes is described in :mod:`cascal.encoders.static`. Building is deterministic:
the same source files and options give the same files, hence the same content hash, with the same
numpy and BLAS (another build of them may round the PCA differently).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from cascal.encoders import static
from cascal.encoders.bert import SOURCE_FILES, BertEncoder
from cascal.encoders.files import read_json, sha256_file, write_safetensors
from cascal.errors import EmbeddingError

__all__ = ["DEFAULT_DIM", "DEFAULT_SIF", "build_static", "default_name"]

#: Default output dimension (PCA components).
DEFAULT_DIM = 256
#: Default SIF coefficient ``a`` of the rank weights.
DEFAULT_SIF = 1e-4
#: Default largest number of tokens of a text the built embedder reads.
DEFAULT_MAX_TOKENS = 512
_TOKENS_PER_PASS = 1024


def source_name(folder: Path) -> str:
    """The source model's name: the folder's own name, or the model id its README names."""
    readme = folder / "README.md"
    if readme.is_file():
        match = re.search(r"sentence-transformers/([\w.-]+)", readme.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    return folder.resolve().name


def default_name(model: str, dim: int) -> str:
    """The embedder name a build gives by default, e.g. ``static-all-MiniLM-L6-v2-d256``."""
    return f"static-{model}-d{dim}"


def rank_weights(vocab_size: int, sif: float) -> np.ndarray:
    """SIF weights ``a / (a + p_r)`` of Zipf probabilities ``p_r = 1 / (r · H_V)``, ``r = 1..V``."""
    ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
    probs = 1.0 / (ranks * np.sum(1.0 / ranks))
    return sif / (sif + probs)


def pca(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, float]:
    """``vectors`` centred and projected on their top ``dim`` principal directions, and the share
    of the variance those directions keep. The sign of each direction is fixed (largest-magnitude
    loading positive) so that the result does not depend on the SVD routine's sign choice."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:dim]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components *= signs[:, None]
    kept = float(np.sum(singular[:dim] ** 2) / np.sum(singular**2))
    return centred @ components.T, kept


def build_static(
    source: Union[str, Path],
    out: Union[str, Path],
    *,
    dim: int = DEFAULT_DIM,
    sif: float = DEFAULT_SIF,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    name: Optional[str] = None,
    vocab_limit: Optional[int] = None,
    progress: Optional[Callable[[int, int], Any]] = None,
) -> dict[str, Any]:
    """Distil the sentence-transformers folder ``source`` into a static embedder folder ``out``.

    Args:
        source: a sentence-transformers BERT model folder (``config.json``, ``model.safetensors``,
            ``tokenizer.json`` ...).
        out: the folder to write (created; files of an earlier build are replaced).
        dim: output dimension, at most the encoder's width.
        sif: SIF coefficient of the rank weights (> 0).
        max_tokens: most tokens of a text the embedder reads.
        name: the embedder's name in the manifest (default :func:`default_name`).
        vocab_limit: keep only the first ``vocab_limit`` tokens of the vocabulary (the most frequent
            ones, in a vocabulary stored by rank); the others are dropped from texts like unknown
            tokens. Default: the whole vocabulary. A smaller table builds and loads faster.
        progress: called as ``progress(done, total)`` with vocabulary tokens encoded so far.

    Returns:
        The manifest written (``cascal_embedder.json``).

    Raises:
        EmbeddingError: the source folder cannot be read, or an option is out of range.
    """
    source = Path(source)
    out = Path(out)
    encoder = BertEncoder(source, batch_size=_TOKENS_PER_PASS)
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= encoder.dim:
        raise EmbeddingError(f"dim: must be an integer in 1..{encoder.dim} (the encoder's width), got {dim!r}")
    if isinstance(sif, bool) or not isinstance(sif, (int, float)) or not sif > 0:
        raise EmbeddingError(f"sif: must be a number > 0, got {sif!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise EmbeddingError(f"max_tokens: must be an integer >= 1, got {max_tokens!r}")
    vocab = encoder.vocab_size
    if vocab_limit is not None:
        if isinstance(vocab_limit, bool) or not isinstance(vocab_limit, int) or vocab_limit < 1:
            raise EmbeddingError(f"vocab_limit: must be an integer >= 1, got {vocab_limit!r}")
        vocab = min(vocab, vocab_limit)
    tokenizer = encoder.tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls is None or sep is None:
        raise EmbeddingError(f"{source / 'tokenizer.json'}: no [CLS] and [SEP] tokens (a BERT WordPiece tokenizer)")
    done = 0

    def step(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, vocab)

    vectors = encoder.encode_ids([[cls, token, sep] for token in range(vocab)], progress=step)
    reduced, kept = pca(vectors, dim)
    table = (reduced * rank_weights(vocab, float(sif))[:, None]).astype(np.float32)

    out.mkdir(parents=True, exist_ok=True)
    model = source_name(source)
    embedder_name = name or default_name(model, dim)
    write_safetensors(out / static.TABLE, {static.TABLE_KEY: table}, metadata={"cascal": embedder_name})
    (out / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "tokenizer_name": model,
        "apply_pca": dim,
        "apply_zipf": True,
        "sif_coefficient": float(sif),
        "hidden_dim": dim,
        "seq_length": max_tokens,
        "normalize": True,
    }
    (out / "config.json").write_text(static.manifest_json(config), encoding="utf-8")
    unk = read_json(source / "tokenizer.json").get("model", {}).get("unk_token", "[UNK]")
    manifest = {
        "format": static.FORMAT_NAME,
        "format_version": static.FORMAT_VERSION,
        "name": embedder_name,
        "dim": dim,
        "vocab_size": vocab,
        "max_tokens": max_tokens,
        "unk_token": unk,
        "source": {
            "model": model,
            "files": {f: sha256_file(source / f) for f in SOURCE_FILES if (source / f).is_file()},
        },
        "build": {
            "method": "model2vec",
            "pca_dim": dim,
            "pca_variance_kept": round(kept, 6),
            "sif": float(sif),
            "vocab_limit": vocab_limit,
        },
        "files": {f: sha256_file(out / f) for f in static.HASHED_FILES},
    }
    (out / static.MANIFEST).write_text(static.manifest_json(manifest), encoding="utf-8")
    return manifest
