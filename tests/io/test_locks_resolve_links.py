"""Locks keyed by a path are taken on the resolved path: a symbolic link to a labels file or to a
dataset folder (or a path through a linked parent folder) is locked together with its target.

Before, ``cascal label`` on ``a.csv`` and on a link ``b.csv -> a.csv`` both proceeded, and so did two
runs on one dataset folder named through a link.
"""

from __future__ import annotations

import pytest

from cascal.errors import DataError
from cascal.io.files import dataset_lock, labels_lock, labels_lock_path


def test_labels_lock_through_a_symlink_is_the_same_lock(tmp_path):
    real = tmp_path / "a.csv"
    (tmp_path / "b.csv").symlink_to(real)  # a dangling link too: the file may not exist yet
    (tmp_path / "linked").symlink_to(tmp_path)
    assert labels_lock_path(tmp_path / "b.csv") == labels_lock_path(real) == tmp_path / ".a.csv.lock"
    with labels_lock(real):
        for other in (tmp_path / "b.csv", tmp_path / "linked" / "a.csv", tmp_path / "linked" / "b.csv"):
            with pytest.raises(DataError, match=rf"^{other}: another labelling session"):
                with labels_lock(other):
                    pass
    with labels_lock(tmp_path / "b.csv"):  # released: taken through the link at once
        with pytest.raises(DataError, match="another labelling session"):
            with labels_lock(real):
                pass


def test_dataset_lock_through_a_symlinked_folder_is_the_same_lock(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "alias").symlink_to(folder)
    with dataset_lock(folder) as lock:
        assert lock == folder.resolve() / ".cascal.lock"
        with pytest.raises(DataError, match=rf"^{tmp_path / 'alias'}: folder is being answered by another run"):
            with dataset_lock(tmp_path / "alias"):
                pass
    with dataset_lock(tmp_path / "alias") as lock:
        assert lock == folder.resolve() / ".cascal.lock"
        assert not (tmp_path / ".cascal.lock").exists()
