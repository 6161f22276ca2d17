"""Router files are read with bounds: sizes are checked before reading, damage is a RouterFileError.

Each test names what happened before the reader checked sizes and headers.
"""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascal.errors import CascalError
from cascal.router import CascalRouter
from cascal.router.persistence import MANIFEST, RouterFileError, load_record

FIXTURE = Path(__file__).parent / "data" / "router_v2.cascal"
RAW = FIXTURE.read_bytes()


def _entries(src: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(src) as zf:
        return {info.filename: zf.read(info.filename) for info in zf.infolist()}


def _write(dst: Path, entries: dict[str, bytes], *, stream: Optional[dict[str, tuple[bytes, int]]] = None) -> Path:
    """A zip of ``entries``; ``stream`` entries are written as ``prefix`` followed by ``n`` zero bytes."""
    stream = stream or {}
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry, data in entries.items():
            if entry in stream:
                prefix, n = stream[entry]
                with zf.open(entry, "w", force_zip64=True) as fh:
                    fh.write(prefix)
                    chunk = bytes(2**20)
                    for _ in range(n // len(chunk)):
                        fh.write(chunk)
            else:
                zf.writestr(entry, data)
    return dst


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_fixture_files_still_load():
    for name in ("router_v1.cascal", "router_v2.cascal"):
        record = load_record(Path(__file__).parent / "data" / name)
        assert record.tables.centroids.dtype == np.float32


def test_member_larger_than_the_manifest_implies_is_refused_before_inflating(tmp_path):
    # before: the member was inflated in full (a 53 MB file declaring 50 GB ran out of memory)
    entries = _entries(FIXTURE)
    bomb = _write(
        tmp_path / "bomb.cascal", entries, stream={"arrays/stats_mu.npy": (entries["arrays/stats_mu.npy"], 64 * 2**20)}
    )
    assert bomb.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(RouterFileError, match=rf"{bomb}: entry arrays/stats_mu.npy declares \d+ bytes"):
            load_record(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_manifest_declaring_too_many_bytes_is_refused(tmp_path):
    entries = _entries(FIXTURE)
    bomb = _write(tmp_path / "bomb.cascal", entries, stream={MANIFEST: (b"", 65 * 2**20)})
    with pytest.raises(RouterFileError, match=rf"{bomb}: entry manifest.json declares \d+ bytes"):
        load_record(bomb)


def test_member_whose_declared_size_lies_is_read_bounded(tmp_path):
    # the zip declares the honest size of the small member but its data inflates much further
    entries = _entries(FIXTURE)
    bomb = _write(
        tmp_path / "lie.cascal", entries, stream={"arrays/stats_mu.npy": (entries["arrays/stats_mu.npy"], 32 * 2**20)}
    )
    raw = bytearray(bomb.read_bytes())
    true_size = 32 * 2**20 + len(entries["arrays/stats_mu.npy"])
    small = len(entries["arrays/stats_mu.npy"])
    patched = raw.replace(struct.pack("<Q", true_size), struct.pack("<Q", small))
    assert patched != raw
    bomb.write_bytes(bytes(patched))
    tracemalloc.start()
    try:
        with pytest.raises(RouterFileError, match=rf"{bomb}"):
            load_record(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_npy_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    # before: numpy tried to allocate the (10**12,) array and raised its own allocation error
    entries = _entries(FIXTURE)
    entries["arrays/centroid_sizes.npy"] = _npy_header("<i8", (10**12,))
    entries["arrays/centroids.npy"] = _npy_header("<f4", (10**12, 16))
    bad = _write(tmp_path / "huge.cascal", entries)
    with pytest.raises(RouterFileError, match=r"arrays/centroids.npy\) declares shape \(1000000000000, 16\)"):
        load_record(bad)


def test_npy_header_disagreeing_with_the_manifest_names_the_array(tmp_path):
    entries = _entries(FIXTURE)
    entries["arrays/global_scores.npy"] = _npy_header("<f8", (10**12,))
    bad = _write(tmp_path / "shape.cascal", entries)
    with pytest.raises(
        RouterFileError, match=r"array global_scores is float64\(1000000000000,\), expected float64\(\d+,\)"
    ):
        load_record(bad)


def test_truncated_member_data_is_refused(tmp_path):
    entries = _entries(FIXTURE)
    entries["arrays/stats_sigma.npy"] = entries["arrays/stats_sigma.npy"][:-3]
    bad = _write(tmp_path / "short.cascal", entries)
    with pytest.raises(RouterFileError, match="arrays/stats_sigma.npy"):
        load_record(bad)


def test_flipped_byte_in_compressed_data_is_a_router_file_error(tmp_path):
    # before: a raw zlib.error (or BadZipFile) traceback
    with zipfile.ZipFile(FIXTURE) as zf:
        info = zf.getinfo("arrays/centroids.npy")
    name_len, extra_len = struct.unpack_from("<HH", RAW, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    assert info.compress_type == zipfile.ZIP_DEFLATED
    raw = bytearray(RAW)
    seen = set()
    for pos in range(start, start + info.compress_size):
        flipped = bytearray(raw)
        flipped[pos] ^= 0xFF
        bad = tmp_path / "flip.cascal"
        bad.write_bytes(bytes(flipped))
        try:
            load_record(bad)
        except RouterFileError as exc:
            seen.add(str(exc).startswith(f"{bad}: entry arrays/centroids.npy is "))
        else:  # only a flip of the padding bits after the deflate stream's last code goes unseen
            assert pos == start + info.compress_size - 1
    assert seen == {True}


def test_absurd_manifest_counts_are_refused(tmp_path):
    entries = _entries(FIXTURE)
    manifest = json.loads(entries[MANIFEST])
    manifest["embedding_dim"] = 10**12
    entries[MANIFEST] = json.dumps(manifest).encode()
    bad = _write(tmp_path / "dim.cascal", entries)
    with pytest.raises(RouterFileError, match=r"embedding_dim must be an integer in 1\.\.65536, got 1000000000000"):
        load_record(bad)


def test_router_file_naming_a_huge_hashing_embedder_is_refused(tmp_path):
    # before: loading worked and the first route asked for a 5.6 GiB projection
    entries = _entries(FIXTURE)
    manifest = json.loads(entries[MANIFEST])
    manifest["embedding_model"] = "hashing-100000000"
    entries[MANIFEST] = json.dumps(manifest).encode()
    bad = _write(tmp_path / "hashing.cascal", entries)
    with pytest.raises(
        RouterFileError, match=rf"{bad}: embedding_model 'hashing-100000000'.* at most 65536, got 100000000"
    ):
        CascalRouter.load(bad)


def _damaged(data: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for pos, mask in flips:
        out[pos % len(out)] ^= mask
    return bytes(out[: max(0, len(out) - cut)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(0, len(RAW) - 1), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.just(0), st.integers(0, len(RAW))),
)
def test_fuzz_damaged_files_raise_only_router_file_errors_quickly(tmp_path, flips, cut):
    path = tmp_path / "fuzz.cascal"
    path.write_bytes(_damaged(RAW, flips, cut))
    start = time.perf_counter()
    try:
        CascalRouter.load(path)
    except RouterFileError as exc:
        assert str(exc).startswith(str(path))
    except CascalError as exc:  # pragma: no cover - reported with the input that caused it
        pytest.fail(f"{type(exc).__name__} instead of RouterFileError: {exc}")
    assert time.perf_counter() - start < 1.0
