"""Saving and loading a fitted :class:`cascal.router.CascalRouter` as one versioned file.

The file is a zip archive holding ``manifest.json`` and one ``.npy`` file per array under
``arrays/``. Nothing is pickled: arrays are read with ``allow_pickle=False`` and the manifest is
plain JSON, so loading a file executes nothing from it. The manifest records the format name and
version, the cascal version that wrote it, the router's parameters, the calibrated routing
constants (``fallback_distance_``, ``subject_temp_``), the model and subject names and the embedding
model and dimension.

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
import zipfile
from os import PathLike, fspath
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from cascal.errors import RouterFileError

if TYPE_CHECKING:  # pragma: no cover
    from cascal.router.cascal_router import CascalRouter

FORMAT_NAME = "cascal-router"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MANIFEST_KEYS = (
    "format", "format_version", "cascal_version", "params", "model_names", "subject_names",
    "embedding_model", "embedding_dim",
)
#: Manifest keys added in format version 2.
MANIFEST_KEYS_V2 = ("routing",)
#: Parameters a version-1 file lacks, with the values that reproduce how it routed.
V1_PARAMS = {"fallback_quantile": 0.99, "subject_temp": 0.0}
#: array name -> (fitted attribute, dtype, shape spec in terms of M models, S subjects, C centroids, d dims)
ARRAYS = {
    "global_scores": ("global_scores_", np.float64, ("M",)),
    "subject_reps": ("subject_reps_", np.float32, ("S", "d")),
    "centroids": ("centroids_", np.float32, ("C", "d")),
    "centroid_subject": ("centroid_subject_", np.int64, ("C",)),
    "centroid_scores": ("centroid_scores_", np.float64, ("C", "M")),
    "centroid_sizes": ("centroid_sizes_", np.int64, ("C",)),
    "stats_mu": (None, np.float64, ("M",)),
    "stats_sigma": (None, np.float64, ("M",)),
}


def save_router(router: "CascalRouter", path: Union[str, "PathLike[str]"]) -> None:
    """Write the fitted ``router`` to ``path`` (see the module docstring for the layout).

    Raises:
        cascal.router.base.NotFittedError: the router is not fitted.
        ValueError: a parameter cannot be stored as JSON (e.g. a non-integer ``random_state``).
    """
    from cascal import __version__

    router._check_fitted()
    params = router.get_params(deep=False)
    params["clamp"] = [float(c) for c in params["clamp"]]
    try:
        params_json = json.loads(json.dumps(params))
    except TypeError as exc:
        raise ValueError(f"router parameters cannot be saved as JSON: {exc}") from None
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "cascal_version": __version__,
        "params": params_json,
        "model_names": list(router.model_names_),
        "subject_names": list(router.subject_names_),
        "embedding_model": getattr(router, "embedding_model_", router.embedding_model),
        "embedding_dim": int(router.centroids_.shape[1]),
        "routing": {
            "fallback_distance": float(router.fallback_distance_),
            "subject_temp": float(router.subject_temp_),
        },
    }
    arrays = {name: getattr(router, attr) for name, (attr, _, _) in ARRAYS.items() if attr is not None}
    arrays["stats_mu"] = router.stats_.mu
    arrays["stats_sigma"] = router.stats_.sigma
    with zipfile.ZipFile(fspath(path), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        for name, (_, dtype, _) in ARRAYS.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arrays[name], dtype=dtype), allow_pickle=False)
            zf.writestr(f"arrays/{name}.npy", buf.getvalue())


def load_router(path: Union[str, "PathLike[str]"]) -> "CascalRouter":
    """Read a router written by :func:`save_router`; it routes exactly as the saved one did.

    Raises:
        RouterFileError: the file is missing, not a router file, corrupt, truncated, incomplete, or
            written in a newer format version than this cascal reads.
    """
    name = fspath(path)
    try:
        with zipfile.ZipFile(name, "r") as zf:
            manifest = _read_manifest(zf, name)
            arrays = {key: _read_array(zf, name, key) for key in ARRAYS}
    except FileNotFoundError:
        raise RouterFileError(f"{name}: no such file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise RouterFileError(f"{name}: not a readable router file (corrupt or truncated zip: {exc})") from None
    return _build_router(name, manifest, arrays)


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


def _build_router(name: str, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> "CascalRouter":
    from cascal.router.cascal_router import CascalRouter, ConsensusStats
    from cascal.router.niches import Niche

    models = _string_list(manifest["model_names"], "model_names", name)
    subjects = _string_list(manifest["subject_names"], "subject_names", name)
    dim = manifest["embedding_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise RouterFileError(f"{name}: embedding_dim must be a positive integer, got {dim!r}")
    sizes = {"M": len(models), "S": len(subjects), "C": int(arrays["centroids"].shape[0]), "d": dim}
    for key, (_, dtype, spec) in ARRAYS.items():
        arr = arrays[key]
        expected = tuple(sizes[s] for s in spec)
        if arr.dtype != dtype or arr.shape != expected:
            raise RouterFileError(f"{name}: array {key} is {arr.dtype}{arr.shape}, expected {np.dtype(dtype)}{expected}")
    cs = arrays["centroid_subject"]
    if cs.size and (cs.min() < 0 or cs.max() >= len(subjects)):
        raise RouterFileError(f"{name}: centroid_subject holds indices outside 0..{len(subjects) - 1}")

    params = manifest["params"]
    if not isinstance(params, dict):
        raise RouterFileError(f"{name}: params must be a JSON object")
    params = dict(params)
    version = manifest["format_version"]
    if version == 1:
        for key, value in V1_PARAMS.items():
            params.setdefault(key, value)
    known = set(CascalRouter().get_params(deep=False))
    unknown, missing = sorted(set(params) - known), sorted(known - set(params))
    if unknown or missing:
        raise RouterFileError(f"{name}: params unknown {unknown}, missing {missing}")
    if isinstance(params["clamp"], list):
        params["clamp"] = tuple(params["clamp"])
    router = CascalRouter(**params)
    try:
        router.validate_params()
    except ValueError as exc:
        raise RouterFileError(f"{name}: invalid saved parameter: {exc}") from None

    embedding_model = manifest["embedding_model"]
    if embedding_model is not None and not isinstance(embedding_model, str):
        raise RouterFileError(f"{name}: embedding_model must be a string or null, got {embedding_model!r}")
    router.fallback_distance_, router.subject_temp_ = _routing_constants(name, manifest, router)
    router.model_names_ = models
    router.embedding_model_ = embedding_model
    router.subject_names_ = subjects
    for key, (attr, _, _) in ARRAYS.items():
        if attr is not None:
            setattr(router, attr, arrays[key])
    router.stats_ = ConsensusStats(mu=arrays["stats_mu"], sigma=arrays["stats_sigma"])
    router.niches_ = {s: [] for s in subjects}
    for c in range(sizes["C"]):
        subject = subjects[int(cs[c])]
        router.niches_[subject].append(
            Niche(subject=subject, centroid=arrays["centroids"][c], size=int(arrays["centroid_sizes"][c]),
                  scores=arrays["centroid_scores"][c])
        )
    return router


def _routing_constants(name: str, manifest: dict[str, Any], router: "CascalRouter") -> tuple[float, float]:
    """``(fallback_distance_, subject_temp_)`` of the saved router; a version-1 file routed with its
    fixed ``fallback_distance`` parameter and hard subject assignment."""
    if manifest["format_version"] == 1:
        if isinstance(router.fallback_distance, str):
            raise RouterFileError(f"{name}: a version-1 file needs a numeric fallback_distance parameter")
        return float(router.fallback_distance), 0.0
    routing = manifest["routing"]
    if not isinstance(routing, dict) or set(routing) != {"fallback_distance", "subject_temp"}:
        raise RouterFileError(f"{name}: routing must be an object with fallback_distance and subject_temp")
    values = []
    for key in ("fallback_distance", "subject_temp"):
        value = routing[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise RouterFileError(f"{name}: routing.{key} must be a finite number >= 0, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def _string_list(value: object, key: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RouterFileError(f"{name}: {key} must be a list of strings")
    return list(value)
