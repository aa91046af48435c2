"""Atomic writes: a temporary file beside the destination, renamed into place when complete.

A failure never leaves a half-written file behind: the temporary file is removed, and the
folders a write created are removed again when they stay empty (:func:`make_dirs`,
:func:`remove_empty_dirs`). A process killed during a write leaves its temporary file, whose
name says which machine and process made it, so that a later run removes it
(:func:`remove_stale_temps`); a process told to stop at once removes its own
(:func:`remove_files_in_progress`).

Examples
--------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "out.nii")
>>> with atomic_output(path, ".nii") as tmp:
...     with open(tmp, "wb") as fh:
...         _ = fh.write(b"complete")
>>> os.listdir(folder)
['out.nii']
>>> os.remove(path); os.rmdir(folder)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from napari_resample.engine.memory import format_bytes


@contextlib.contextmanager
def atomic_output(path: str, suffix: str) -> Iterator[str]:
    """A temporary file name beside *path* to write to; renamed onto *path* when the block
    ends without error, deleted when it fails (a full disk is reported with the free space).

    The temporary name comes from :func:`temp_name` (ending in ``.tmp`` + *suffix*, so a writer
    that picks its format by suffix sees the right one) and is listed for
    :func:`remove_files_in_progress` while it exists.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = begin_temp(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
        fsync_folder(folder)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if (plain := write_error(exc, path)) is not exc:
            raise plain from exc
        raise
    finally:
        end_temp(tmp)


def begin_temp(path: str, suffix: str) -> str:
    """The temporary file through which *path* is written: in the same folder (a rename within
    a folder is atomic), named by :func:`temp_name`, and listed for
    :func:`remove_files_in_progress` until :func:`end_temp`."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, temp_name(os.path.basename(path), suffix))
    _IN_PROGRESS.add(tmp)
    return tmp


def end_temp(tmp: str) -> None:
    """Stop listing *tmp* for :func:`remove_files_in_progress`: it was renamed or removed."""
    _IN_PROGRESS.discard(tmp)


def write_error(exc: BaseException, path: str) -> BaseException:
    """What a write to *path* that failed with *exc* raises: the one place where the errors of
    the operating system become one sentence naming the folder and the reason.

    A full disk or quota, a folder without write permission, a read-only file system, or a
    folder gone or not a folder give an exception of *exc*'s own type and errno whose message
    is that sentence (``cannot write into '/out': permission denied``; never the name of a
    temporary file); any other *exc* is returned as is.

    Examples
    --------
    >>> str(write_error(PermissionError(13, "Permission denied", "/out/.x.tmp"), "/out/x.nii"))
    "cannot write into '/out': permission denied"
    """
    if not isinstance(exc, OSError) or exc.errno not in _WRITE_PROBLEMS:
        return exc
    folder = os.path.dirname(os.path.abspath(path))
    if exc.errno in _DISK_FULL:
        message = f"no space left to write {path!r}: {_free_space(folder)} free in {folder!r}"
    else:
        message = f"cannot write into {folder!r}: {_WRITE_PROBLEMS[exc.errno]}"
    plain = type(exc)(message)
    plain.errno = exc.errno
    return plain


#: errno values of a full disk or an exhausted quota.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
#: errno values of a write that the folder refuses, and how a message says it.
_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of its path is not a folder",
}


def fsync_folder(folder: str) -> None:
    """Make a rename in *folder* durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _free_space(folder: str) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "an unknown amount"
    return format_bytes(free)


#: Bytes of the destination's name kept in a temporary file's name (the whole name stays within
#: 255 bytes: ``.`` stem ``.`` host(32) ``-`` pid(10) ``-`` 12 hex ``.tmp.nii.gz``).
_TMP_STEM_BYTES = 180
#: A temporary file of :func:`atomic_output`: ``.<stem>.<host>-<pid>-<12 hex>.tmp<suffix>``, the
#: suffix one of ``.nii.gz``, ``.nii.zarr`` (a folder), ``.nii`` (also the uncompressed stage
#: of the isal path), ``.nrrd``
#: and ``.mha`` (:func:`napari_resample.io.formats.save_itk`), or ``.hold`` (:func:`held_dirs`).
_TMP_PATTERN = re.compile(
    r"^\..*\.(?P<host>[A-Za-z0-9_]*)-(?P<pid>\d+)-[0-9a-f]{12}\.tmp\.(nii(\.gz|\.zarr)?|nrrd|mha|hold|png|jpg|html|json)$"
)


#: Temporary files this process is writing now (see :func:`remove_files_in_progress`).
_IN_PROGRESS: set[str] = set()


def remove_files_in_progress() -> None:
    """Delete the temporary files this process is writing: for a signal handler that ends the
    process at once (a pool worker told to stop), where no ``finally`` clause will run."""
    for path in list(_IN_PROGRESS):
        with contextlib.suppress(OSError):
            remove_path(path)


def remove_path(path: str) -> None:
    """Remove the file, or the folder with everything in it (a NIfTI-Zarr being written), at
    *path*; FileNotFoundError when there is none."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32]


def temp_name(name: str, suffix: str) -> str:
    """Name of a temporary file for the output *name*, recognisable as ours and stale later.

    It holds this machine's name and this process's id, so that a later run can tell that
    the process that made it is gone (:func:`remove_stale_temps`). The destination's name is
    shortened in it (never the unique part) so that it is not too long where the final one
    is not (255 bytes is the usual limit on a name).
    """
    # In the file system's bytes (a name that is not UTF-8 keeps its bytes, as os.fsdecode
    # gave them); a character cut in two becomes bytes of its own, still a valid name.
    stem = os.fsdecode(os.fsencode(name)[:_TMP_STEM_BYTES])
    return f".{stem}.{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{suffix}"


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files in *folder* left by processes of this machine that are gone
    (killed during a write); return their paths. Other machines' files are left alone."""
    removed: list[str] = []
    host = _host_tag()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TMP_PATTERN.match(name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        path = os.path.join(folder, name)
        try:
            remove_path(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but was not reaped yet (Linux; False where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # "pid (name) state ...": the name may hold spaces and ")"; the state follows the last ")".
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def make_dirs(folder: str, created: list[str]) -> None:
    """Create *folder* and its missing parents as ``os.makedirs`` would, walking the path as
    given (``a/b/../c`` creates ``a/b``); append each folder created to *created*, outermost
    first, as soon as it exists (so a failure part-way still lists what to remove)."""
    missing = []
    current = folder
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder_ in reversed(missing):
        if not os.path.isdir(folder_):  # "a/b/.." exists once "a/b" does
            try:
                os.mkdir(folder_)
            except FileExistsError:  # another process made it just now: not ours to remove
                continue
            except OSError as exc:
                raise write_error(exc, folder_) from exc
            created.append(folder_)


def remove_empty_dirs(created: Sequence[str]) -> None:
    """Remove the folders of *created* (outermost first, as :func:`make_dirs` lists them) that
    are still empty, innermost first; a folder already gone or holding files is left as is."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:  # gone already, or not empty (then neither are its parents)
            continue


@contextlib.contextmanager
def held_dirs(folders: Sequence[str], created: list[str]) -> Iterator[None]:
    """Create *folders* (as :func:`make_dirs`, appending to *created*) and hold each one with
    an empty hidden file for as long as the block runs; then remove the holds and the folders
    of *created* that are empty.

    A hold keeps another process's cleanup (which removes only the folders it created, and
    only when empty: ``os.rmdir``, never a tree) from removing a folder this one is about to
    write into: two runs sharing an output folder each keep the folders they use. A folder
    removed by another process before its hold exists is made again. A hold left by a killed
    process is stale like a temporary file (:func:`remove_stale_temps`).
    """
    holds: list[str] = []
    try:
        for folder in folders:
            holds.append(_hold(folder, created))
        yield
    finally:
        for hold in holds:
            with contextlib.suppress(OSError):
                os.unlink(hold)
        remove_empty_dirs(created)


#: Attempts at holding a folder that other processes keep removing.
_HOLD_ATTEMPTS = 10


def _hold(folder: str, created: list[str]) -> str:
    """Make *folder* and an empty hold file in it; return the hold's path."""
    name = temp_name("napari-resample", ".hold")
    for attempt in range(_HOLD_ATTEMPTS):
        make_dirs(folder, created)
        path = os.path.join(folder, name)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return path
        except FileNotFoundError as exc:  # removed by another process since make_dirs: again
            if attempt == _HOLD_ATTEMPTS - 1:
                raise write_error(exc, path) from exc
        except OSError as exc:
            raise write_error(exc, path) from exc
    raise AssertionError("unreachable")  # pragma: no cover
