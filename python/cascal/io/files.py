"""Writing files so that a reader never sees half of one, and locking them against a second writer.

Every file cascal writes for a later step to read goes through this module:

- :func:`atomic_open` (a file object), :func:`atomic_write_text`, :func:`atomic_write_bytes` and
  :func:`atomic_path` (a path, for writers such as pyarrow's that open the file themselves) write a
  uniquely named temporary file in the target's folder, ``.<name>.<pid>@<host>.<random>.tmp``, and
  move it over the target with :func:`os.replace` when the write is complete. A reader sees the old
  file or the new one, never a mix; a write that raises removes its temporary file and leaves the
  old file as it was; a killed writer leaves the old file and at most a hidden ``.tmp`` file that no
  dataset file pattern matches. Two writers never share a temporary file: the last one to finish wins.
- The next atomic write of the same target removes the temporary files that dead writers left
  (:func:`remove_stale_temps`): only names of exactly that pattern, written on this host (``<host>``
  is a short hash of the host name), whose writer ``<pid>`` no longer runs. A live writer's file,
  another host's (a shared folder) and anything not named by this module are left alone. (A
  reused pid only keeps a stale file longer.)
- The new file gets the permissions a plain ``open()`` would give it (``0o666`` less the umask),
  not the ``0o600`` of :mod:`tempfile`.
- A symbolic link at the target is replaced by the new file; the file it pointed to is left as it
  was. (Writing through the link would change a file that other folders may share, e.g. a dataset
  folder made of links to read-only data.)

:func:`dataset_lock` and :func:`labels_lock` hold an ``flock`` on a lock file recording the
holder's pid (:func:`exclusive_lock`), so that a second writer is refused, naming that pid, instead
of overwriting the first one's work. The kernel drops the lock with the process, however it ends,
so a killed run never leaves a file locked. On a system without ``fcntl`` (Windows) nothing is locked.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Union

from cascal.errors import CascalError, DataError, InvalidParameterError

PathLike = Union[str, "os.PathLike[str]"]

#: The lock file of a dataset folder (:func:`dataset_lock`).
LOCK_FILE = ".cascal.lock"
#: The ending of every temporary file of an atomic write (``.<name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"

__all__ = [
    "LOCK_FILE",
    "TEMP_SUFFIX",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "dataset_lock",
    "exclusive_lock",
    "labels_lock",
    "labels_lock_path",
    "new_file_mode",
    "remove_stale_temps",
]


# ---------------------------------------------------------------------------------- atomic writes
def new_file_mode() -> int:
    """The permissions ``open()`` gives a new file: ``0o666`` less the process's umask."""
    umask = os.umask(0o022)  # the umask can only be read by setting it: restore it at once
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """The path of a new, empty temporary file in ``target``'s folder, moved over ``target`` when
    the ``with`` block ends, or removed if the block raises (see the module docstring).

    For writers that take a path and open the file themselves; whatever they opened must be closed
    before the block ends. The folder must exist.
    """
    final = Path(target)
    remove_stale_temps(final)
    try:
        with _TEMPS_LOCK:  # another thread's cleanup must not see it before it is registered
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=_temp_prefix(final), suffix=TEMP_SUFFIX)
            _LIVE_TEMPS.add(os.path.basename(name))
    except OSError as exc:
        raise _about(exc, final) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())  # as open() would create it, not tempfile's 0o600
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise _about(exc, final) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _LIVE_TEMPS.discard(tmp.name)


def _host_tag() -> str:
    """8 hex digits naming this host in temporary file names (a host name may hold dots)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _temp_prefix(target: Path) -> str:
    """``.<name>.<pid>@<host>.``: the start of this process's temporary files for ``target``."""
    return f".{target.name}.{os.getpid()}@{_host_tag()}."


#: names of the temporary files this process is writing now (a stale file may carry this process's
#: pid too: a container starts every run with the same pid)
_LIVE_TEMPS: set[str] = set()
#: held while a temporary file is created and registered, and while one of this process's pid is removed
_TEMPS_LOCK = threading.Lock()


def _pid_running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts: it cannot be signalled)."""
    if pid <= 0:
        return True  # not a pid a writer could have: never treat its file as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temps(target: PathLike) -> list[Path]:
    """Remove the temporary files of ``target`` that writers which died before finishing left in
    its folder (e.g. after ``kill -9``); returns the removed paths.

    A file is removed only if its name is ``.<name>.<pid>@<host>.<random>.tmp`` for exactly this
    target's name, ``<host>`` is this host's tag and no process ``<pid>`` runs (or ``<pid>`` is this
    process's and the file is not one it is writing now): a live writer's temporary file, another
    host's, and any other file are never touched. Failures to list or
    remove are ignored (the write itself reports a folder it cannot use).
    """
    final = Path(target)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(\d+)@([0-9a-f]{{8}})\.[A-Za-z0-9_]+{re.escape(TEMP_SUFFIX)}$")
    host = _host_tag()
    removed: list[Path] = []
    prefix = f".{final.name}."
    try:
        with os.scandir(final.parent) as entries:
            names = [e.name for e in entries if e.name.startswith(prefix) and e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or match.group(2) != host:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_running(pid):
            continue
        path = final.parent / name
        with _TEMPS_LOCK:
            if name in _LIVE_TEMPS:
                continue
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed.append(path)
            except OSError:
                pass
    return removed


def _about(exc: OSError, target: Path) -> OSError:
    """``exc`` naming ``target`` instead of its temporary file (the file the user asked for);
    the same subclass (``FileNotFoundError``, ``PermissionError``, ...) and reason."""
    if exc.errno is None or exc.strerror is None:  # not from the system: nothing to rename
        return exc
    return OSError(exc.errno, exc.strerror, str(target))


@contextmanager
def atomic_open(target: PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """A file object on a temporary file in ``target``'s folder that replaces ``target`` when the
    ``with`` block ends, or is removed if the block raises (see the module docstring).

    ``mode`` ``"w"`` writes UTF-8 text with line endings as given (no translation), ``"wb"`` bytes.
    The folder must exist.

    Raises:
        cascal.errors.InvalidParameterError: another ``mode``.
    """
    if mode not in ("w", "wb"):
        raise InvalidParameterError(f"mode: expected 'w' or 'wb', got {mode!r}")
    text: dict[str, Any] = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
    with atomic_path(target) as tmp, open(tmp, mode, **text) as fh:
        yield fh


def atomic_write_text(target: PathLike, text: str) -> Path:
    """Replace ``target`` with the UTF-8 ``text`` (line endings as given) atomically; returns its path."""
    with atomic_open(target, "w") as fh:
        fh.write(text)
    return Path(target)


def atomic_write_bytes(target: PathLike, data: bytes) -> Path:
    """Replace ``target`` with ``data`` atomically; returns its path."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)
    return Path(target)


# ------------------------------------------------------------------------------------------ locks
@contextmanager
def exclusive_lock(lock: PathLike, refusal: Callable[[str], CascalError], *, wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created if needed, never removed) while the
    ``with`` block runs; the holder's pid is written into it and cleared when the block ends.

    Args:
        lock: the lock file; its folder must exist.
        refusal: makes the error raised when another process holds the lock, from that process's
            pid as the lock file records it (``"unknown"`` if it records none).
        wait: wait for the other holder to finish instead of refusing at once.

    Yields:
        The lock file's path.

    Raises:
        cascal.errors.CascalError: ``refusal(pid)``, when ``wait`` is false and the lock is held.
    """
    path = Path(lock)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise refusal(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def dataset_lock(folder: PathLike, *, wait: bool = False, purpose: str = "answered") -> Iterator[Path]:
    """Hold the exclusive lock of the dataset folder ``folder`` (the file :data:`LOCK_FILE` in it,
    see :func:`exclusive_lock`) while the ``with`` block runs. A run that rewrites the answer files
    from what it read earlier (``cascal answer``) holds it for the whole run.

    Args:
        folder: an existing dataset folder.
        wait: wait for the other holder to finish instead of refusing at once.
        purpose: what the holder does to the folder, for the message.

    Yields:
        The lock file's path, in the folder ``folder`` resolves to (symbolic links followed: every
        name of one folder shares its lock).

    Raises:
        cascal.errors.DataError: ``folder`` is not a folder; ``wait`` is false and another process
            holds the lock (the message names the folder and that process's pid).
    """
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such dataset folder")

    def refusal(holder: str) -> DataError:
        return DataError(
            f"{folder}: folder is being {purpose} by another run (pid {holder}); wait for it to finish (or pass --wait)"
        )

    # the resolved folder: a link to the folder (or through a linked parent) shares its lock
    with exclusive_lock(Path(folder).resolve() / LOCK_FILE, refusal, wait=wait) as path:
        yield path


def labels_lock_path(path: PathLike) -> Path:
    """The lock file of the labels file ``path``: ``.<name>.lock`` beside the file ``path`` resolves
    to (symbolic links followed, as far as they exist), so that every name of one file (a link to
    it, a path through a linked folder) shares one lock."""
    file = Path(path).resolve()
    return file.parent / f".{file.name}.lock"


@contextmanager
def labels_lock(path: PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the labels file ``path`` (:func:`labels_lock_path`, see
    :func:`exclusive_lock`) while the ``with`` block runs, so that two labelling sessions never
    write one file (the second would overwrite the first one's answers). The folder of ``path`` is
    created if needed; the lock never waits.

    Yields:
        The lock file's path (:func:`labels_lock_path`: beside the resolved file, so a symbolic
        link to a labels file is locked with it).

    Raises:
        cascal.errors.DataError: another process holds the lock; the message names the file and
            that process's pid.
    """
    file = Path(path)

    def refusal(holder: str) -> DataError:
        return DataError(
            f"{file}: another labelling session (pid {holder}) is writing it; finish or quit that one first"
        )

    file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = labels_lock_path(file)
    lock_path.parent.mkdir(parents=True, exist_ok=True)  # a dangling link's target folder
    with exclusive_lock(lock_path, refusal) as lock:
        yield lock
