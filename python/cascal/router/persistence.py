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

Format versions: 4 added the ``embedding_sha256`` parameter (the content hash of the embedder's
files, ``null`` when not known); a file of an earlier version loads with ``embedding_sha256 = None``
(its embedder is checked by name only, as before). 3 added cost-aware routing: the ``cost_weight`` parameter and, for a router
fitted with prices, the optional arrays ``centroid_costs`` ``(C, M)`` and ``global_costs`` ``(M,)``
(float64, expected USD per 1,000 queries; both or neither). A version-1 or -2 file loads with
``cost_weight = 0`` and no costs, i.e. it routes exactly as it did. 2 added the routing constants and the ``fallback_quantile`` and ``subject_temp``
parameters. A version-1 file (written before soft subject assignment and the calibrated fallback
existed) loads with ``subject_temp = 0`` and its saved fixed ``fallback_distance``, i.e. it keeps
routing exactly as it did when it was written.

Loading checks everything it reads: a file that is not a zip, is truncated, lacks an entry or a
manifest key, holds arrays of the wrong shape or dtype, or was written in a newer format version
raises :class:`RouterFileError` naming the file and the problem. The values are checked too
(:func:`check_values`), as the routing kernel would check them at the first route: a file that
loads routes, so a server never reports healthy on tables every request would fail with. Any other
exception met while reading (a damaged ``.npy`` header can make numpy's header parser raise
``tokenize.TokenError``, for one) is reported as :class:`RouterFileError` too: loading a router file
raises nothing else.

Reading is bounded: the manifest is read first (at most :data:`MAX_MANIFEST_BYTES`) and fixes ``M``,
``S`` and ``d``; each array entry's ``.npy`` header is parsed before any of its data, its declared
dtype and shape are checked against the manifest (``C``, the number of centroids, comes from the
``centroids`` header and must keep every array under :data:`MAX_ARRAY_BYTES`), the zip-declared
uncompressed size of the entry must equal the header plus exactly that data, and the data is read
from a stream with that many bytes requested, never more. Corrupt compressed data, a bad CRC, a
truncated entry or a header that disagrees with the manifest raises :class:`RouterFileError`
naming the file and the entry, before anything large is allocated.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from os import PathLike, fspath
from typing import IO, Any, Optional, Union

import numpy as np

from cascal._core import __version__
from cascal.embedding import hashing_dim
from cascal.errors import ArgumentTypeError, DataError, EmbeddingError, InvalidParameterError, RouterFileError
from cascal.kernels.routing import RoutingTables

__all__ = ["FORMAT_VERSION", "RouterFileError", "RouterRecord", "check_values", "load_record", "save_record"]

FORMAT_NAME = "cascal-router"
FORMAT_VERSION = 4
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
#: Parameters a version-1 or -2 file lacks, with the values that reproduce how it routed.
V2_PARAMS = {"cost_weight": 0.0}
#: Parameters a file of version 3 or earlier lacks (its embedder is checked by name only).
V3_PARAMS: dict[str, Any] = {"embedding_sha256": None}
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
#: Optional routing-table arrays (version 3; present together or not at all).
COST_ARRAYS = {"centroid_costs": (np.float64, ("C", "M")), "global_costs": (np.float64, ("M",))}
#: The other arrays: the consensus statistics of :class:`RouterRecord`.
STATS_ARRAYS = {"stats_mu": (np.float64, ("M",)), "stats_sigma": (np.float64, ("M",))}
#: Largest ``manifest.json`` entry read (uncompressed bytes, as the zip declares them).
MAX_MANIFEST_BYTES = 64 * 2**20
#: Largest array entry read: no array of a router file may hold more data bytes than this.
MAX_ARRAY_BYTES = 2**28
#: Largest ``embedding_dim`` accepted.
MAX_EMBEDDING_DIM = 65_536
#: What reading a damaged zip entry can raise: decompression, CRC and truncation errors, an
#: unsupported compression method or an encrypted entry.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, struct.error)


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
        DataError: (a ``ValueError``) the parts do not fit together (names against table shapes, subject indices,
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
            raise ArgumentTypeError(f"tables: expected RoutingTables, got {type(tables).__name__}")
        n_models, n_subjects = len(self.model_names), len(self.subject_names)
        if tables.n_models != n_models:
            raise DataError(f"tables: scores {tables.n_models} models, model_names lists {n_models}")
        if tables.subject_reps.shape[0] != n_subjects:
            raise DataError(f"tables: {tables.subject_reps.shape[0]} subject_reps, subject_names lists {n_subjects}")
        cs = tables.centroid_subject
        if cs.size and (cs.min() < 0 or cs.max() >= n_subjects):
            raise DataError(f"centroid_subject holds indices outside 0..{n_subjects - 1}")
        if tables.centroid_sizes is None:
            raise DataError("tables: centroid_sizes is required")
        for name in ("stats_mu", "stats_sigma"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n_models,):
                raise DataError(f"{name}: expected shape ({n_models},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        if set(self.constants) != set(CONSTANTS):
            raise DataError(f"routing must be an object with {' and '.join(CONSTANTS)}")
        for key in CONSTANTS:
            value = self.constants[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise DataError(f"routing.{key} must be a finite number >= 0, got {value!r}")


def save_record(record: RouterRecord, path: Union[str, "PathLike[str]"]) -> None:
    """Write ``record`` to ``path`` (see the module docstring for the layout), atomically: a reader
    sees the old file or the new one, and a failed or killed save leaves the old file as it was.

    Raises:
        InvalidParameterError: (a ``ValueError``) a parameter cannot be stored as JSON (e.g. a non-integer ``random_state``).
    """
    try:
        params_json = json.loads(json.dumps(record.params))
    except TypeError as exc:
        raise InvalidParameterError(f"router parameters cannot be saved as JSON: {exc}") from None
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
    if record.tables.has_costs:
        arrays.update({name: (getattr(record.tables, name), dtype) for name, (dtype, _) in COST_ARRAYS.items()})
    arrays.update({name: (getattr(record, name), dtype) for name, (dtype, _) in STATS_ARRAYS.items()})
    from cascal.io.files import atomic_open  # a killed save leaves the old router file, never half a zip

    with atomic_open(fspath(path), "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        for name, (values, dtype) in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(values, dtype=dtype), allow_pickle=False)
            zf.writestr(f"arrays/{name}.npy", buf.getvalue())


def load_record(path: Union[str, "PathLike[str]"]) -> RouterRecord:
    """Read the record of a router file written by :func:`save_record` (any format version up to
    :data:`FORMAT_VERSION`); a version-1 file gets the constants it routed with.

    Every entry is checked before it is read (see the module docstring), so a damaged or hostile
    file costs at most the memory its manifest justifies.

    Raises:
        RouterFileError: the file is missing, not a router file, corrupt, truncated, incomplete,
            inconsistent, or written in a newer format version than this cascal reads; the message
            starts with the file's path and names the entry when one is at fault.
    """
    name = fspath(path)
    try:
        with zipfile.ZipFile(name, "r") as zf:
            manifest = _read_manifest(zf, name)
            sizes = _manifest_sizes(name, manifest)
            arrays = {
                key: _read_array(zf, name, key, dtype, spec, sizes)
                for key, (dtype, spec) in (*TABLE_ARRAYS.items(), *STATS_ARRAYS.items())
            }
            present = [key for key in COST_ARRAYS if f"arrays/{key}.npy" in zf.namelist()]
            if present and len(present) != len(COST_ARRAYS):
                raise RouterFileError(f"{name}: holds {present[0]} without {set(COST_ARRAYS) - set(present)}")
            arrays.update({key: _read_array(zf, name, key, *COST_ARRAYS[key], sizes) for key in present})
    except RouterFileError:
        raise
    except FileNotFoundError:
        raise RouterFileError(f"{name}: no such file") from None
    except (*_ZIP_ERRORS, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise RouterFileError(f"{name}: not a readable router file (corrupt or truncated zip: {exc})") from None
    except Exception as exc:  # whatever else damage provokes in zipfile or numpy: still this file's fault
        raise RouterFileError(f"{name}: not a readable router file ({type(exc).__name__}: {exc})") from None
    check_values(name, arrays, len(manifest["subject_names"]))
    return _build_record(name, manifest, arrays)


def check_values(name: str, arrays: dict[str, np.ndarray], n_subjects: int) -> None:
    """Refuse the arrays of router file ``name`` whose values the routing kernel would refuse at
    the first route, or that no fit writes: what the format says is finite must be finite.

    - ``subject_reps`` and ``centroids``: finite, no all-zero row (the kernel normalises the rows);
    - ``centroid_scores`` and ``global_scores``: finite or NaN (NaN = no data), never infinite, and
      at least one ``global_scores`` entry not NaN;
    - ``centroid_subject``: every subject ``0..S-1`` owns a centroid (indices out of range are
      refused by :class:`RouterRecord`); ``centroid_sizes``: ``>= 0``;
    - ``centroid_costs`` and ``global_costs`` (when present): finite;
    - ``stats_mu`` finite, ``stats_sigma`` finite and ``> 0`` (as the consensus kernel requires).

    Raises:
        RouterFileError: naming the file, the array and the first offending position.
    """

    def refuse(key: str, where: np.ndarray, problem: str) -> None:
        bad = np.argwhere(where)
        if bad.size:
            at = tuple(int(i) for i in bad[0])
            raise RouterFileError(f"{name}: array {key} holds {problem} at {at[0] if len(at) == 1 else at}")

    for key in ("subject_reps", "centroids"):
        values = arrays[key]
        refuse(key, ~np.isfinite(values), "a NaN or infinite value")
        refuse(key, ~np.any(values != 0, axis=1), "an all-zero row")
    for key in ("centroid_scores", "global_scores"):
        refuse(key, np.isinf(arrays[key]), "an infinite score (scores are finite, or NaN for no data)")
    if arrays["global_scores"].size and np.isnan(arrays["global_scores"]).all():
        raise RouterFileError(f"{name}: array global_scores is all NaN; at least one model needs a score")
    owned = np.zeros(n_subjects, dtype=bool)
    subjects = arrays["centroid_subject"]
    owned[subjects[(subjects >= 0) & (subjects < n_subjects)]] = True
    refuse("centroid_subject", ~owned, "no centroid for subject")
    refuse("centroid_sizes", arrays["centroid_sizes"] < 0, "a negative size")
    for key in (*COST_ARRAYS, "stats_mu", "stats_sigma"):
        if key in arrays:
            refuse(key, ~np.isfinite(arrays[key]), "a NaN or infinite value")
    refuse("stats_sigma", arrays["stats_sigma"] <= 0, "a scale <= 0")


def _entry_info(zf: zipfile.ZipFile, name: str, entry: str, missing: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(entry)
    except KeyError:
        raise RouterFileError(f"{name}: {missing}") from None


def _read_entry(stream: IO[bytes], name: str, entry: str, n: int) -> bytes:
    """Exactly ``n`` bytes of ``entry`` (a bounded read: at most ``n`` are ever requested)."""
    try:
        data = stream.read(n)
    except _ZIP_ERRORS as exc:
        raise RouterFileError(f"{name}: entry {entry} is corrupt ({type(exc).__name__}: {exc})") from None
    if len(data) != n:
        raise RouterFileError(f"{name}: entry {entry} is truncated ({len(data)} of {n} bytes)")
    return data


def _check_entry_end(stream: IO[bytes], name: str, entry: str) -> None:
    """Read past the last byte of ``entry``, which makes zipfile check its CRC."""
    extra = _read_entry_tail(stream, name, entry)
    if extra:
        raise RouterFileError(f"{name}: entry {entry} holds more data than its header declares")


def _read_entry_tail(stream: IO[bytes], name: str, entry: str) -> bytes:
    try:
        return stream.read(1)
    except _ZIP_ERRORS as exc:
        raise RouterFileError(f"{name}: entry {entry} is corrupt ({type(exc).__name__}: {exc})") from None


def _read_manifest(zf: zipfile.ZipFile, name: str) -> dict[str, Any]:
    info = _entry_info(zf, name, MANIFEST, f"no {MANIFEST} entry; not a cascal router file")
    if info.file_size > MAX_MANIFEST_BYTES:
        raise RouterFileError(
            f"{name}: entry {MANIFEST} declares {info.file_size} bytes, more than the {MAX_MANIFEST_BYTES} read"
        )
    try:
        stream = zf.open(info)
    except _ZIP_ERRORS as exc:
        raise RouterFileError(f"{name}: entry {MANIFEST} is corrupt ({type(exc).__name__}: {exc})") from None
    with stream:
        raw = _read_entry(stream, name, MANIFEST, info.file_size)
        _check_entry_end(stream, name, MANIFEST)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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


def _manifest_sizes(name: str, manifest: dict[str, Any]) -> dict[str, int]:
    """``M``, ``S`` and ``d`` as the manifest states them (checked, ``d`` capped), before any array
    is read; also refuses an embedding model this cascal would refuse to build."""
    models = _string_list(manifest["model_names"], "model_names", name)
    subjects = _string_list(manifest["subject_names"], "subject_names", name)
    dim = manifest["embedding_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_EMBEDDING_DIM:
        raise RouterFileError(f"{name}: embedding_dim must be an integer in 1..{MAX_EMBEDDING_DIM}, got {dim!r}")
    embedding_model = manifest["embedding_model"]
    if embedding_model is not None and not isinstance(embedding_model, str):
        raise RouterFileError(f"{name}: embedding_model must be a string or null, got {embedding_model!r}")
    try:
        if embedding_model is not None:
            hashing_dim(embedding_model)  # refuses a hashing-<d> above the cap
    except EmbeddingError as exc:
        raise RouterFileError(f"{name}: embedding_model {exc}") from None
    return {"M": len(models), "S": len(subjects), "d": dim}


def _read_array(
    zf: zipfile.ZipFile, name: str, key: str, dtype: Any, spec: tuple[str, ...], sizes: dict[str, int]
) -> np.ndarray:
    """Array ``key``, after its ``.npy`` header and zip-declared size are checked against the
    manifest's ``sizes`` (``C`` is fixed by the first array that has it and added to ``sizes``)."""
    entry = f"arrays/{key}.npy"
    info = _entry_info(zf, name, entry, f"array entry {entry} is missing")
    try:
        stream = zf.open(info)
    except _ZIP_ERRORS as exc:
        raise RouterFileError(f"{name}: entry {entry} is corrupt ({type(exc).__name__}: {exc})") from None
    with stream:
        shape, fortran, file_dtype, offset = _read_npy_header(stream, name, entry)
        if file_dtype != np.dtype(dtype) or len(shape) != len(spec):
            raise RouterFileError(
                f"{name}: array {key} is {file_dtype}{shape}, expected {np.dtype(dtype)}{_expected(spec, sizes)}"
            )
        if "C" in spec and "C" not in sizes:
            sizes["C"] = shape[spec.index("C")]
        expected = tuple(sizes[s] for s in spec)
        if shape != expected:
            raise RouterFileError(f"{name}: array {key} is {file_dtype}{shape}, expected {np.dtype(dtype)}{expected}")
        n_bytes = math.prod(shape) * file_dtype.itemsize
        if n_bytes > MAX_ARRAY_BYTES:
            raise RouterFileError(
                f"{name}: array {key} ({entry}) declares shape {shape}: {n_bytes} bytes, more than the "
                f"{MAX_ARRAY_BYTES} a router file may hold per array"
            )
        if info.file_size != offset + n_bytes:
            raise RouterFileError(
                f"{name}: entry {entry} declares {info.file_size} bytes, its .npy header implies {offset + n_bytes}"
            )
        data = bytearray(_read_entry(stream, name, entry, n_bytes))
        _check_entry_end(stream, name, entry)
    return np.frombuffer(data, dtype=file_dtype).reshape(shape, order="F" if fortran else "C")


def _expected(spec: tuple[str, ...], sizes: dict[str, int]) -> tuple[Union[int, str], ...]:
    return tuple(sizes.get(s, s) for s in spec)


def _read_npy_header(stream: IO[bytes], name: str, entry: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, bytes before the data)`` of the ``.npy`` file ``stream`` is at
    the start of; only format versions 1.0 and 2.0, no object dtype."""
    from numpy.lib import format as npy_format

    counted = _CountingReader(stream)
    try:
        version = npy_format.read_magic(counted)
        if version == (1, 0):
            shape, fortran, file_dtype = npy_format.read_array_header_1_0(counted)
        elif version == (2, 0):
            shape, fortran, file_dtype = npy_format.read_array_header_2_0(counted)
        else:
            raise RouterFileError(
                f"{name}: {entry} is not a plain .npy array (unsupported .npy format version {version})"
            )
    except RouterFileError:
        raise
    except _ZIP_ERRORS as exc:
        raise RouterFileError(f"{name}: entry {entry} is corrupt ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # numpy parses the header with ast and tokenize: anything can come out
        raise RouterFileError(f"{name}: {entry} is not a plain .npy array ({type(exc).__name__}: {exc})") from None
    if file_dtype.hasobject:
        raise RouterFileError(f"{name}: {entry} is not a plain .npy array (object arrays are refused)")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise RouterFileError(f"{name}: {entry} is not a plain .npy array (bad shape {shape!r})")
    return tuple(shape), bool(fortran), file_dtype, counted.count


class _CountingReader:
    """A read-only view of a stream that counts the bytes read (the ``.npy`` header length) and
    refuses short reads as a truncated header."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.source = stream
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > 2**20:
            raise DataError(f".npy header asks to read {n} bytes")
        data = self.source.read(n)
        self.count += len(data)
        return data


def _build_record(name: str, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> RouterRecord:
    models = _string_list(manifest["model_names"], "model_names", name)
    subjects = _string_list(manifest["subject_names"], "subject_names", name)
    params = manifest["params"]
    if not isinstance(params, dict):
        raise RouterFileError(f"{name}: params must be a JSON object")
    params = dict(params)
    if manifest["format_version"] == 1:
        for key, value in V1_PARAMS.items():
            params.setdefault(key, value)
    if manifest["format_version"] <= 2:
        for key, value in V2_PARAMS.items():
            params.setdefault(key, value)
    if manifest["format_version"] <= 3:
        for key, value in V3_PARAMS.items():
            params.setdefault(key, value)
    embedding_model = manifest["embedding_model"]
    try:
        return RouterRecord(
            params=params,
            constants=_routing_constants(name, manifest, params),
            tables=RoutingTables(**{key: arrays[key] for key in (*TABLE_ARRAYS, *COST_ARRAYS) if key in arrays}),
            model_names=models,
            subject_names=subjects,
            embedding_model=embedding_model,
            stats_mu=arrays["stats_mu"],
            stats_sigma=arrays["stats_sigma"],
        )
    except ValueError as exc:
        raise RouterFileError(f"{name}: {exc}") from None
    except Exception as exc:  # a value no check above foresaw: still this file's fault
        raise RouterFileError(f"{name}: {type(exc).__name__}: {exc}") from None


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
