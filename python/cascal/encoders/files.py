"""Reading the files of a model folder: every failure is an :class:`EmbeddingError` naming the file.

The optional packages ``tokenizers`` and ``safetensors`` (the ``cascal[static]`` extra, also in
``cascal[serve]``) are imported here, when a file is read.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from cascal.errors import EmbeddingError

__all__ = ["import_optional", "load_tokenizer", "read_json", "read_safetensors", "sha256_file", "write_safetensors"]

#: Most bytes of a JSON file of a model folder read (configs and manifests are small).
MAX_JSON_BYTES = 16 * 2**20


def import_optional(module: str) -> Any:
    """Import one of the optional packages of the torch-free encoders, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EmbeddingError(
            f"the torch-free encoders need the package {module!r}: pip install 'cascal[static]'"
        ) from None


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise EmbeddingError(f"{path}: no such file")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (at most :data:`MAX_JSON_BYTES`)."""
    _existing(path)
    try:
        raw = path.read_bytes()[: MAX_JSON_BYTES + 1]
    except OSError as exc:
        raise EmbeddingError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise EmbeddingError(f"{path}: larger than the {MAX_JSON_BYTES} bytes a model's JSON file may have")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EmbeddingError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise EmbeddingError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the safetensors file ``path`` as a numpy array."""
    numpy_io = import_optional("safetensors.numpy")
    _existing(path)
    try:
        return dict(numpy_io.load_file(str(path)))
    except Exception as exc:  # the Rust reader raises its own SafetensorError, OSError, ValueError...
        raise EmbeddingError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write ``tensors`` (contiguous arrays) to the safetensors file ``path``."""
    numpy_io = import_optional("safetensors.numpy")
    numpy_io.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)


def load_tokenizer(path: Path, max_tokens: int) -> Any:
    """The ``tokenizers.Tokenizer`` of ``tokenizer.json`` at ``path``, without padding, keeping at
    most ``max_tokens`` tokens of a text (special tokens included)."""
    tokenizers = import_optional("tokenizers")
    _existing(path)
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # a damaged file raises the library's own exception type
        raise EmbeddingError(f"{path}: not a readable tokenizer.json ({type(exc).__name__}: {exc})") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file ``path``."""
    digest = hashlib.sha256()
    try:
        with open(_existing(path), "rb") as fh:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
    except OSError as exc:
        raise EmbeddingError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return digest.hexdigest()
