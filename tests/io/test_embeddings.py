"""Embeddings files of dataset folders: chosen by name, checked (rows, dtype, finite values),
never unpickled, memory-mapped on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_dataset import QUESTIONS, write_folder

from cascal.data import DataError
from cascal.io import load_dataset, save_dataset


def test_embeddings_with_wrong_rows_or_ambiguous_files(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    np.save(folder / "embeddings_a.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"embeddings_a.npy: expected 2 rows"):
        load_dataset(folder)
    np.save(folder / "embeddings_a.npy", np.ones((2, 4), dtype=np.float32))
    np.save(folder / "embeddings_b.npy", np.ones((2, 4), dtype=np.float32))
    with pytest.raises(DataError, match="several embedding files"):
        load_dataset(folder)
    assert load_dataset(folder, embeddings="b").embedding_model == "b"
    with pytest.raises(DataError, match="no embeddings for model 'c'"):
        load_dataset(folder, embeddings="c")


class _Trap:
    """Unpickling this object would create the file ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_and_string_embeddings_are_refused_never_unpickled(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    trap = tmp_path / "unpickled"
    np.save(folder / "embeddings_e.npy", np.array([[_Trap(str(trap))], [None]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"embeddings_e.npy: holds Python objects \(pickled data\), not numbers"):
        load_dataset(folder)
    assert not trap.exists()
    np.save(
        folder / "embeddings_e.npy", np.array([["0.5", "1"], ["2", "3"]])
    )  # a DataError, not a TypeError from isfinite
    with pytest.raises(DataError, match=r"embeddings_e.npy: dtype <U3 is not numeric"):
        load_dataset(folder)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: np.savez(f, a=np.ones((2, 3))), r"not a \.npy array \(an \.npz archive\?\)"),
        (lambda f: f.write(b""), "not a readable .npy array"),
        (
            lambda f: f.write(
                b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 10000000000), }".ljust(
                    128, b" "
                )[:127]
                + b"\n"
            ),
            "not a readable .npy array",
        ),
        (lambda f: np.save(f, np.array([[1e300, 0.0], [0.0, 0.0]])), "values beyond the float32 range"),
        (lambda f: np.save(f, np.array([[np.nan, 0.0], [0.0, 0.0]])), "contains NaN or infinite values"),
        (lambda f: np.save(f, np.zeros((2, 2), dtype=complex)), "dtype complex128 is not numeric"),
    ],
)
def test_unusable_embedding_files_name_the_file(tmp_path, make, message):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    with open(folder / "embeddings_e.npy", "wb") as fh:
        make(fh)
    with pytest.raises(DataError, match=r"embeddings_e\.npy: .*" + message):
        load_dataset(folder)


def test_saving_over_an_unreadable_embeddings_file_is_refused_before_writing(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    rm = load_dataset(folder)
    (folder / "embeddings_x.npy").write_bytes(b"junk")
    before = (folder / "questions.jsonl").read_bytes()
    rm.questions = ["changed", "too"]
    with pytest.raises(DataError, match="embeddings_x.npy: not a readable .npy array"):
        save_dataset(rm, folder)
    assert (folder / "questions.jsonl").read_bytes() == before


def test_load_embeddings_file_mmap_maps_float32_without_a_copy(tmp_path):
    from cascal.io import load_embeddings_file

    X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "e.npy", X)
    mapped = load_embeddings_file(tmp_path / "e.npy", 300, mmap=True)
    assert isinstance(mapped.base, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, X)
    copied = load_embeddings_file(tmp_path / "e.npy", 300)
    assert copied.base is None and copied.flags.writeable
    # float64 files are converted (a float32 view of them cannot exist)
    np.save(tmp_path / "d.npy", X.astype(np.float64))
    assert load_embeddings_file(tmp_path / "d.npy", 300, mmap=True).dtype == np.float32
    X[250, 3] = np.inf
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(DataError, match="NaN or infinite"):
        load_embeddings_file(tmp_path / "bad.npy", 300, mmap=True)


def test_train_fits_on_memory_mapped_embeddings(tmp_path, monkeypatch):
    """``cascal train`` loads the dataset with ``mmap=True``: fit receives the mapping itself."""
    import cascal.io
    from cascal.pipeline.train import train_router
    from cascal.router import CascalRouter

    seen = {}
    real_fit = CascalRouter.fit

    def spy(self, embeddings, responses, *args, **kwargs):
        seen["base"] = embeddings.base
        return real_fit(self, embeddings, responses, *args, **kwargs)

    monkeypatch.setattr(CascalRouter, "fit", spy)
    folder = _small_trainable_folder(tmp_path)
    train_router(folder, tmp_path / "r.cascal")
    assert isinstance(seen["base"], np.memmap)
    assert cascal.io.load_dataset(folder).embeddings.base is None  # without mmap: in memory


def _small_trainable_folder(tmp_path: Path) -> Path:
    """A dataset folder of simulated answers with float32 embeddings (what ``cascal embed`` writes)."""
    from dataclasses import replace

    from simulated_data import simulated_responses

    from cascal.simulate import SimWorld

    data = simulated_responses(SimWorld(seed=0), n_subjects=3, per_subject=40)
    emb = np.random.default_rng(1).normal(size=(data.n_questions, 16)).astype(np.float32)
    return save_dataset(replace(data, embeddings=emb, embedding_model="toy"), tmp_path / "ds")
