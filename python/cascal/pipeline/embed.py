"""Pipeline stage **embed**: embed the question texts of a dataset folder and cache them there.

The ``question`` texts are embedded (options are not included, as for the shipped MMLU-Pro
embeddings) and saved as ``embeddings_<name>.npy`` in the folder, next to ``embeddings_<name>.json``
holding the embedder's name, a SHA-256 of the texts and, for an embedder made from files (the static
embedder), the content hash of those files (``embedder_sha256``): a rerun with the same questions and
embedder reuses the file, changed questions or embedder files recompute it. :func:`embedder_identity`
reads the name and hash back for training. The embedders themselves live in :mod:`cascal.embedding`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import numpy as np

from cascal.embedding import DEFAULT_MODEL, Embedder, embed_texts, get_embedder, texts_digest
from cascal.errors import DataError
from cascal.io import atomic_open, atomic_write_text, embeddings_path, load_dataset, load_embeddings_file

PathLike = Union[str, Path]

__all__ = ["embed_dataset", "embedder_identity", "embeddings_meta_path"]


def embeddings_meta_path(npy: Path) -> Path:
    """The JSON file recording which texts and embedder produced the embeddings file ``npy``."""
    return npy.with_suffix(".json")


def _read_meta(meta_file: Path) -> dict:
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, unreadable, not UTF-8, not JSON
        return {}
    return meta if isinstance(meta, dict) else {}


def embedder_identity(dataset_dir: PathLike, name: str) -> tuple[str, Optional[str]]:
    """The embedder name and files hash of the embeddings file of ``name`` in a dataset folder, as
    recorded by :func:`embed_dataset`: ``name`` as read from the file name (a ``/`` written ``__``)
    gives the name the embedder really has, and its ``embedder_sha256`` (``None`` when not recorded)."""
    folder = Path(dataset_dir)
    target = embeddings_path(folder, name)
    meta = _read_meta(embeddings_meta_path(target))
    recorded = meta.get("embedder")
    if isinstance(recorded, str) and embeddings_path(folder, recorded) == target:
        sha = meta.get("embedder_sha256")
        return recorded, sha if isinstance(sha, str) else None
    return name, None


def embed_dataset(
    dataset_dir: PathLike,
    model: Union[str, Embedder] = DEFAULT_MODEL,
    backend: str = "auto",
    *,
    batch_size: int = 256,
    progress: bool = False,
    force: bool = False,
) -> np.ndarray:
    """Embed the question texts of a dataset folder and save ``embeddings_<name>.npy`` there.

    Args:
        dataset_dir: the dataset folder (see :mod:`cascal.io`).
        model, backend: as for :func:`get_embedder`; ``model`` may also be a ready :class:`Embedder`
            (``backend`` is then ignored).
        batch_size: texts per :meth:`Embedder.encode` call.
        progress: show a progress bar.
        force: recompute even when a matching cached file exists.

    Returns:
        ``(n_questions, d)`` float32 unit-norm embeddings in questions.jsonl order. Pass an
        :class:`Embedder` as ``model`` to know its name (the file is ``embeddings_<name>.npy``).
    """
    folder = Path(dataset_dir)
    # only the question texts are used: a prediction letter beyond its options does not stop embedding
    dataset = load_dataset(folder, embeddings=None, out_of_range="unparsable")
    texts = list(dataset.questions or [])
    embedder = model if isinstance(model, Embedder) else get_embedder(model, backend)
    target = embeddings_path(folder, embedder.name)
    meta_file = embeddings_meta_path(target)
    digest = texts_digest(texts)
    if not force and target.exists() and meta_file.exists():
        meta = _read_meta(meta_file)  # unreadable: recompute
        if (
            meta.get("texts_sha256") == digest
            and meta.get("embedder") == embedder.name
            and meta.get("embedder_sha256") == embedder.content_hash
        ):
            try:
                return load_embeddings_file(target, len(texts))
            except (OSError, DataError):  # a damaged or misaligned cache file is recomputed
                pass
    vectors = embed_texts(embedder, texts, batch_size=batch_size, progress=progress)
    with atomic_open(target, "wb") as fh:  # a killed run leaves the old file, never a truncated one
        np.save(fh, vectors)
    meta = {"embedder": embedder.name, "n": len(texts), "dim": int(vectors.shape[1]), "texts_sha256": digest}
    if embedder.content_hash is not None:
        meta["embedder_sha256"] = embedder.content_hash
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")
    return vectors
