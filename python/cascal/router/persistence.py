"""The router file: one versioned zip that stores a fitted router's :class:`RouterRecord`.

A :class:`RouterRecord` is everything a fitted :class:`cascal.router.CascalRouter` routes with, as
plain values: its constructor parameters, its calibrated routing constants, its routing tables
(:class:`cascal.kernels.RoutingTables`), the model and subject names, the embedding model and the
consensus statistics. ``CascalRouter.save`` hands its record to :func:`save_record`;
``CascalRouter.load`` builds the router from :func:`load_record`'s. This module knows the file,
not the router.

The file is a zip archive holding ``manifest.json`` and one ``.npy`` file per array under
``arrays/``. Nothing is pickled: arrays are read with ``allow_pickle=False`` and the manifest is
plain JSON, so loading a file executes nothing from it. The manifest records the format name and
version, the cascal version that wrote it, the router's parameters, the calibrated routing
constants (``routing``: ``fallback_distance`` and ``subject_temp``), the model and subject names
and the embedding model and dimension. The arrays are the fields of the routing tables
(``subject_reps`` and ``centroids`` as float32) and the consensus statistics ``stats_mu`` and
``stats_sigma``.

Format versions: 2 added the routing constants and the ``fallback_quantile`` and ``subject_temp``
parameters. A version-1 file (written before soft subject assignment and the calibrated fallback
existed) loads with ``subject_temp = 0`` and its saved fixed ``fallback_distance``, i.e. it keeps
routing exactly as it did when it was written.

Loading checks everything it reads: a file that is not a zip, is truncated, lacks an entry or a
manifest key, holds arrays of the wrong shape or dtype, or was written in a newer format version
raises :class:`RouterFileError` naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from os import PathLike, fspath
from typing import Any, Optional, Union

import numpy as np

from cascal._core import __version__
from cascal.errors import RouterFileError
from cascal.kernels.routing import RoutingTables

__all__ = ["FORMAT_VERSION", "RouterFileError", "RouterRecord", "load_record", "save_record"]

FORMAT_NAME = "cascal-router"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MANIFEST_KEYS = (
    "format",
    "format_version",
    "cascal_version",
    "params",
    "model_names",
    "subject_names",
    "embedding_model",
    "embedding_dim",
)
#: Manifest keys added in format version 2.
MANIFEST_KEYS_V2 = ("routing",)
#: Parameters a version-1 file lacks, with the values that reproduce how it routed.
V1_PARAMS = {"fallback_quantile": 0.99, "subject_temp": 0.0}
#: The calibrated routing constants of a record (the manifest's ``routing`` object).
CONSTANTS = ("fallback_distance", "subject_temp")
#: Routing-table arrays in the file: field of :class:`RoutingTables` -> (dtype, shape in terms of
#: M models, S subjects, C centroids, d dimensions).
TABLE_ARRAYS = {
    "global_scores": (np.float64, ("M",)),
    "subject_reps": (np.float32, ("S", "d")),
    "centroids": (np.float32, ("C", "d")),
    "centroid_subject": (np.int64, ("C",)),
    "centroid_scores": (np.float64, ("C", "M")),
    "centroid_sizes": (np.int64, ("C",)),
}
#: The other arrays: the consensus statistics of :class:`RouterRecord`.
STATS_ARRAYS = {"stats_mu": (np.float64, ("M",)), "stats_sigma": (np.float64, ("M",))}


@dataclass(frozen=True, eq=False)
class RouterRecord:
    """A fitted router as plain values: what the file stores.

    Attributes:
        params: the router's constructor parameters (JSON-compatible values).
        constants: the calibrated routing constants, ``{"fallback_distance": ..., "subject_temp": ...}``.
        tables: the routing tables, with ``centroid_sizes``.
        model_names: the ``M`` models, in the column order of the tables.
        subject_names: the ``S`` subjects, in the row order of ``tables.subject_reps``.
        embedding_model: name of the embedding model the tables were fitted with, if known.
        stats_mu: ``(M,)`` float64 logprob location of each model (consensus statistics).
        stats_sigma: ``(M,)`` float64 logprob scale of each model.

    Raises:
        ValueError: the parts do not fit together (names against table shapes, subject indices,
            statistics, constants); the message names the part.
    """

    params: dict[str, Any]
    constants: dict[str, float]
    tables: RoutingTables
    model_names: list[str]
    subject_names: list[str]
    embedding_model: Optional[str]
    stats_mu: np.ndarray = field(repr=False)
    stats_sigma: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        tables = self.tables
        if not isinstance(tables, RoutingTables):
            raise TypeError(f"tables: expected RoutingTables, got {type(tables).__name__}")
        n_models, n_subjects = len(self.model_names), len(self.subject_names)
        if tables.n_models != n_models:
            raise ValueError(f"tables: scores {tables.n_models} models, model_names lists {n_models}")
        if tables.subject_reps.shape[0] != n_subjects:
            raise ValueError(f"tables: {tables.subject_reps.shape[0]} subject_reps, subject_names lists {n_subjects}")
        cs = tables.centroid_subject
        if cs.size and (cs.min() < 0 or cs.max() >= n_subjects):
            raise ValueError(f"centroid_subject holds indices outside 0..{n_subjects - 1}")
        if tables.centroid_sizes is None:
            raise ValueError("tables: centroid_sizes is required")
        for name in ("stats_mu", "stats_sigma"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n_models,):
                raise ValueError(f"{name}: expected shape ({n_models},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        if set(self.constants) != set(CONSTANTS):
            raise ValueError(f"routing must be an object with {' and '.join(CONSTANTS)}")
        for key in CONSTANTS:
            value = self.constants[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"routing.{key} must be a finite number >= 0, got {value!r}")


def save_record(record: RouterRecord, path: Union[str, "PathLike[str]"]) -> None:
    """Write ``record`` to ``path`` (see the module docstring for the layout).

    Raises:
        ValueError: a parameter cannot be stored as JSON (e.g. a non-integer ``random_state``).
    """
    try:
        params_json = json.loads(json.dumps(record.params))
    except TypeError as exc:
        raise ValueError(f"router parameters cannot be saved as JSON: {exc}") from None
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "cascal_version": __version__,
        "params": params_json,
        "model_names": list(record.model_names),
        "subject_names": list(record.subject_names),
        "embedding_model": record.embedding_model,
        "embedding_dim": record.tables.dim,
        "routing": {key: float(record.constants[key]) for key in CONSTANTS},
    }
    arrays = {name: (getattr(record.tables, name), dtype) for name, (dtype, _) in TABLE_ARRAYS.items()}
    arrays.update({name: (getattr(record, name), dtype) for name, (dtype, _) in STATS_ARRAYS.items()})
    with zipfile.ZipFile(fspath(path), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        for name, (values, dtype) in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(values, dtype=dtype), allow_pickle=False)
            zf.writestr(f"arrays/{name}.npy", buf.getvalue())


def load_record(path: Union[str, "PathLike[str]"]) -> RouterRecord:
    """Read the record of a router file written by :func:`save_record` (any format version up to
    :data:`FORMAT_VERSION`); a version-1 file gets the constants it routed with.

    Raises:
        RouterFileError: the file is missing, not a router file, corrupt, truncated, incomplete,
            inconsistent, or written in a newer format version than this cascal reads.
    """
    name = fspath(path)
    try:
        with zipfile.ZipFile(name, "r") as zf:
            manifest = _read_manifest(zf, name)
            arrays = {key: _read_array(zf, name, key) for key in (*TABLE_ARRAYS, *STATS_ARRAYS)}
    except FileNotFoundError:
        raise RouterFileError(f"{name}: no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise RouterFileError(f"{name}: not a readable router file (corrupt or truncated zip: {exc})") from None
    return _build_record(name, manifest, arrays)


def _read_manifest(zf: zipfile.ZipFile, name: str) -> dict[str, Any]:
    try:
        raw = zf.read(MANIFEST)
    except KeyError:
        raise RouterFileError(f"{name}: no {MANIFEST} entry; not a cascal router file") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouterFileError(f"{name}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise RouterFileError(f"{name}: {MANIFEST} must hold a JSON object")
    version = manifest.get("format_version")
    required = MANIFEST_KEYS + (MANIFEST_KEYS_V2 if isinstance(version, int) and version >= 2 else ())
    missing = [k for k in required if k not in manifest]
    if missing:
        raise RouterFileError(f"{name}: {MANIFEST} lacks key(s) {missing}")
    if manifest["format"] != FORMAT_NAME:
        raise RouterFileError(f"{name}: format is {manifest['format']!r}, expected {FORMAT_NAME!r}")
    version = manifest["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RouterFileError(f"{name}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise RouterFileError(
            f"{name}: format version {version} is newer than this cascal reads ({FORMAT_VERSION}); "
            f"written by cascal {manifest['cascal_version']!r}, upgrade cascal to load it"
        )
    return manifest


def _read_array(zf: zipfile.ZipFile, name: str, key: str) -> np.ndarray:
    entry = f"arrays/{key}.npy"
    try:
        raw = zf.read(entry)
    except KeyError:
        raise RouterFileError(f"{name}: array entry {entry} is missing") from None
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise RouterFileError(f"{name}: {entry} is not a plain .npy array ({exc})") from None


def _build_record(name: str, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> RouterRecord:
    models = _string_list(manifest["model_names"], "model_names", name)
    subjects = _string_list(manifest["subject_names"], "subject_names", name)
    dim = manifest["embedding_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise RouterFileError(f"{name}: embedding_dim must be a positive integer, got {dim!r}")
    sizes = {"M": len(models), "S": len(subjects), "C": int(arrays["centroids"].shape[0]), "d": dim}
    for key, (dtype, spec) in (*TABLE_ARRAYS.items(), *STATS_ARRAYS.items()):
        arr = arrays[key]
        expected = tuple(sizes[s] for s in spec)
        if arr.dtype != dtype or arr.shape != expected:
            raise RouterFileError(
                f"{name}: array {key} is {arr.dtype}{arr.shape}, expected {np.dtype(dtype)}{expected}"
            )

    params = manifest["params"]
    if not isinstance(params, dict):
        raise RouterFileError(f"{name}: params must be a JSON object")
    params = dict(params)
    if manifest["format_version"] == 1:
        for key, value in V1_PARAMS.items():
            params.setdefault(key, value)
    embedding_model = manifest["embedding_model"]
    if embedding_model is not None and not isinstance(embedding_model, str):
        raise RouterFileError(f"{name}: embedding_model must be a string or null, got {embedding_model!r}")
    try:
        return RouterRecord(
            params=params,
            constants=_routing_constants(name, manifest, params),
            tables=RoutingTables(**{key: arrays[key] for key in TABLE_ARRAYS}),
            model_names=models,
            subject_names=subjects,
            embedding_model=embedding_model,
            stats_mu=arrays["stats_mu"],
            stats_sigma=arrays["stats_sigma"],
        )
    except ValueError as exc:
        raise RouterFileError(f"{name}: {exc}") from None


def _routing_constants(name: str, manifest: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The calibrated constants of the saved router; a version-1 file routed with its fixed
    ``fallback_distance`` parameter and hard subject assignment (checked by :class:`RouterRecord`)."""
    if manifest["format_version"] == 1:
        fixed = params.get("fallback_distance")
        if isinstance(fixed, bool) or not isinstance(fixed, (int, float)):
            raise RouterFileError(f"{name}: a version-1 file needs a numeric fallback_distance parameter")
        return {"fallback_distance": float(fixed), "subject_temp": 0.0}
    routing = manifest["routing"]
    if not isinstance(routing, dict):
        raise RouterFileError(f"{name}: routing must be an object with {' and '.join(CONSTANTS)}")
    return dict(routing)


def _string_list(value: object, key: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RouterFileError(f"{name}: {key} must be a list of strings")
    return list(value)
