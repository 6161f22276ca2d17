"""The forward pass of a sentence-transformers BERT encoder in numpy (no torch).

:class:`BertEncoder` reads a sentence-transformers model folder as written by that library (for
all-MiniLM-L6-v2: ``config.json``, ``model.safetensors``, ``tokenizer.json``,
``sentence_bert_config.json``, ``1_Pooling/config.json`` and ``modules.json``) and computes what
the library computes: WordPiece tokens with ``[CLS]``/``[SEP]``, cut at ``max_seq_length``; word
+ position + token-type embeddings and LayerNorm; the post-LayerNorm transformer layers (multi-head
self-attention over the non-padding tokens, the exact erf GELU); mean pooling over the tokens; L2
normalisation when the folder lists a ``Normalize`` module. Only mean pooling and absolute
position embeddings are supported; another model is refused naming the file and the setting.

The arithmetic is float32 numpy (BLAS matrix products), texts in length-sorted batches so that
padding stays small. It is the torch-free reference of the encoder and the engine of
:mod:`cascal.encoders.distill`; queries are embedded by the static embedder distilled from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from scipy.special import erf

from cascal.encoders.files import load_tokenizer, read_json, read_safetensors
from cascal.errors import EmbeddingError

__all__ = ["BertEncoder", "SOURCE_FILES"]

#: The files of a sentence-transformers BERT folder that determine its output (hashed by a build).
SOURCE_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray  # (h, 3h): query, key, value weights side by side
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    ln1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    ln2: tuple[np.ndarray, np.ndarray]


class BertEncoder:
    """A sentence-transformers BERT model folder, run in numpy.

    Args:
        folder: the model folder.
        batch_size: texts per forward pass (after sorting by length).

    Raises:
        EmbeddingError: a file is missing or unreadable, a weight is missing or misshapen, or the
            model uses a setting this encoder does not implement; the message names the file.
    """

    def __init__(self, folder: Union[str, Path], *, batch_size: int = 32) -> None:
        self.folder = Path(folder)
        config_file = self.folder / "config.json"
        config = read_json(config_file)
        try:
            self.hidden = int(config["hidden_size"])
            self.heads = int(config["num_attention_heads"])
            self.n_layers = int(config["num_hidden_layers"])
            self.eps = float(config.get("layer_norm_eps", 1e-12))
            act = config.get("hidden_act", "gelu")
            position = config.get("position_embedding_type", "absolute")
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{config_file}: missing or malformed setting {exc}") from None
        if act != "gelu" or position != "absolute" or self.hidden % self.heads:
            raise EmbeddingError(
                f"{config_file}: only BERT with gelu, absolute positions and hidden_size divisible by the heads "
                f"is supported (hidden_act={act!r}, position_embedding_type={position!r})"
            )
        self.max_tokens = self._max_seq_length()
        self._check_pooling()
        self.normalize = self._has_normalize()
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(self.folder / "tokenizer.json", self.max_tokens)
        self._load_weights(self.folder / "model.safetensors")

    # ------------------------------------------------------------------ configuration
    def _max_seq_length(self) -> int:
        path = self.folder / "sentence_bert_config.json"
        value = read_json(path).get("max_seq_length", 512) if path.is_file() else 512
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise EmbeddingError(f"{path}: max_seq_length must be an integer >= 2, got {value!r}")
        return value

    def _check_pooling(self) -> None:
        path = self.folder / "1_Pooling" / "config.json"
        if not path.is_file():
            return  # sentence-transformers pools by the mean without a pooling config
        pooling = read_json(path)
        modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True)
        if modes != ["pooling_mode_mean_tokens"]:
            raise EmbeddingError(f"{path}: only mean pooling is supported, the model pools with {modes}")

    def _has_normalize(self) -> bool:
        path = self.folder / "modules.json"
        if not path.is_file():
            return False
        import json

        try:
            modules = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise EmbeddingError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(modules, list):
            raise EmbeddingError(f"{path}: expected a JSON list of modules")
        return any(isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in modules)

    def _load_weights(self, path: Path) -> None:
        tensors = read_safetensors(path)
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
        h = self.hidden

        def get(name: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
            key = prefix + name
            if key not in tensors:
                raise EmbeddingError(f"{path}: no tensor {key!r}")
            value = np.asarray(tensors[key], dtype=np.float32)
            if shape is not None and value.shape != shape:
                raise EmbeddingError(f"{path}: tensor {key!r} has shape {value.shape}, expected {shape}")
            return value

        def dense(name: str, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
            return np.ascontiguousarray(get(f"{name}.weight", (n_out, n_in)).T), get(f"{name}.bias", (n_out,))

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return get(f"{name}.weight", (h,)), get(f"{name}.bias", (h,))

        self.word = get("embeddings.word_embeddings.weight")
        if self.word.ndim != 2 or self.word.shape[1] != h:
            raise EmbeddingError(f"{path}: word embeddings of shape {self.word.shape}, expected (vocab, {h})")
        self.position = get("embeddings.position_embeddings.weight")
        if self.position.ndim != 2 or self.position.shape[0] < self.max_tokens or self.position.shape[1] != h:
            raise EmbeddingError(f"{path}: position embeddings of shape {self.position.shape} do not fit")
        self.token_type = get("embeddings.token_type_embeddings.weight")[0]
        self.embed_ln = norm("embeddings.LayerNorm")
        inter = get("encoder.layer.0.intermediate.dense.bias").shape[0]
        layers = []
        for i in range(self.n_layers):
            base = f"encoder.layer.{i}."
            parts = [dense(base + f"attention.self.{p}", h, h) for p in ("query", "key", "value")]
            up, up_bias = dense(base + "intermediate.dense", h, inter)
            down, down_bias = dense(base + "output.dense", inter, h)
            out, out_bias = dense(base + "attention.output.dense", h, h)
            layers.append(
                _Layer(
                    qkv=np.ascontiguousarray(np.concatenate([w for w, _ in parts], axis=1)),
                    qkv_bias=np.concatenate([b for _, b in parts]),
                    out=out,
                    out_bias=out_bias,
                    ln1=norm(base + "attention.output.LayerNorm"),
                    up=up,
                    up_bias=up_bias,
                    down=down,
                    down_bias=down_bias,
                    ln2=norm(base + "output.LayerNorm"),
                )
            )
        self.layers = layers

    @property
    def dim(self) -> int:
        """Width of the output vectors."""
        return self.hidden

    @property
    def vocab_size(self) -> int:
        """Rows of the word-embedding table."""
        return int(self.word.shape[0])

    # ------------------------------------------------------------------ forward
    def _layer_norm(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        var = np.mean(centred * centred, axis=-1, keepdims=True)
        return centred / np.sqrt(var + self.eps) * params[0] + params[1]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled (and, with a ``Normalize`` module, L2-normalised) ``(B, hidden)`` float32
        vectors of ``ids`` ``(B, T)`` token ids with ``mask`` ``(B, T)`` (1 = token, 0 = padding)."""
        batch, length = ids.shape
        h, heads = self.hidden, self.heads
        head_dim = h // heads
        x = self.word[ids] + self.position[:length] + self.token_type
        x = self._layer_norm(x, self.embed_ln).reshape(batch * length, h)
        keep = mask.astype(bool)
        bias = np.where(keep, np.float32(0.0), np.float32(-1e9))[:, None, None, :]  # padding gets no attention
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for layer in self.layers:
            qkv = (x @ layer.qkv + layer.qkv_bias).reshape(batch, length, 3, heads, head_dim)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = (q @ k) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, h)
            x = self._layer_norm(x + context @ layer.out + layer.out_bias, layer.ln1)
            up = x @ layer.up + layer.up_bias
            up = up * np.float32(0.5) * (np.float32(1.0) + erf(up * np.float32(1.0 / math.sqrt(2.0))))
            x = self._layer_norm(x + up @ layer.down + layer.down_bias, layer.ln2)
        x = x.reshape(batch, length, h)
        weights = keep.astype(np.float32)
        pooled = np.einsum("bth,bt->bh", x, weights) / np.maximum(weights.sum(axis=1), 1.0)[:, None]
        if self.normalize:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled.astype(np.float32, copy=False)

    def encode_ids(
        self, sequences: Sequence[Sequence[int]], *, progress: Optional[Callable[[int], Any]] = None
    ) -> np.ndarray:
        """``(n, hidden)`` vectors of token-id sequences (special tokens already added), batched by
        length; ``progress(k)`` is called after each batch of ``k`` sequences."""
        out = np.zeros((len(sequences), self.hidden), dtype=np.float32)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            length = max(1, max(len(sequences[i]) for i in rows))
            ids = np.zeros((len(rows), length), dtype=np.int64)
            mask = np.zeros((len(rows), length), dtype=np.int64)
            for r, i in enumerate(rows):
                seq = sequences[i]
                ids[r, : len(seq)] = seq
                mask[r, : len(seq)] = 1
            out[rows] = self.forward(ids, mask)
            if progress is not None:
                progress(len(rows))
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), hidden)`` float32 sentence embeddings, as sentence-transformers computes them."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return self.encode_ids([e.ids for e in encodings])
