"""Temporary files of atomic writes that a killed writer left are removed by the next write of the
same target; a live writer's, another host's, another target's and unrelated files are kept.

Before, every ``kill -9`` during a write left a ``.<name>.<random>.tmp`` file that stayed forever.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cascal.io import files
from cascal.io.files import atomic_path, atomic_write_text, remove_stale_temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_dead_writers_temp_files_of_the_same_target_are_removed(tmp_path):
    target = tmp_path / "out.csv"
    host = files._host_tag()
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".out.csv.{dead}@{host}.abc123_x.tmp",
            "live": f".out.csv.{live.pid}@{host}.abc123_x.tmp",
            "other_host": f".out.csv.{dead}@{'0' * 8 if host != '0' * 8 else '1' * 8}.abc123_x.tmp",
            "other_target": f".out.csv2.{dead}@{host}.abc123_x.tmp",
            "old_style": ".out.csv.k2j4h5g6.tmp",
            "not_temp": f".out.csv.{dead}@{host}.abc123_x.tmp.keep",
            "visible": f"out.csv.{dead}@{host}.abc123_x.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_text("x")
        assert remove_stale_temps(target) == [tmp_path / names["dead"]]
        kept = sorted(p.name for p in tmp_path.iterdir())
        assert kept == sorted(v for k, v in names.items() if k != "dead")
        atomic_write_text(target, "new")  # the write removes them as well (none left to remove)
        assert target.read_text() == "new"
        assert (tmp_path / names["live"]).exists()
    finally:
        live.kill()
        live.wait()


def test_own_pid_files_are_stale_unless_being_written(tmp_path):
    """A container may give every run the same pid: a file with this process's pid that this
    process is not writing now is a dead run's."""
    target = tmp_path / "out.csv"
    stale = tmp_path / f".out.csv.{os.getpid()}@{files._host_tag()}.zzz.tmp"
    stale.write_text("x")
    with atomic_path(target) as tmp:
        assert not stale.exists()
        tmp.write_text("mine")
        assert tmp.name.startswith(f".out.csv.{os.getpid()}@")
        assert remove_stale_temps(target) == []  # our own live file is kept
        assert tmp.exists()
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
