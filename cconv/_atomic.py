"""Atomic file writing: a reader sees the old file or the new one, never a part.

Every writer here goes through :func:`atomic_write`: the data go to a temporary
file in the target's own directory (so that the final rename stays on one file
system), which is flushed and ``fsync``-ed, then ``os.replace``-d onto the
target, and the directory is ``fsync``-ed so that the rename itself survives a
power cut. If anything fails or the writer is interrupted (``KeyboardInterrupt``
included), the temporary file is removed and the target is left as it was.

``.npz`` archives are written without pickle (object arrays are refused) and
are meant to be read back with ``np.load(path, allow_pickle=False)``.

Examples
--------
>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "metrics.json")
>>> atomic_write_json(path, {"acc": 0.99})
>>> with open(path) as f:
...     json.load(f)
{'acc': 0.99}
"""

import contextlib
import errno
import json
import os
import re
import secrets
import zipfile

import numpy as np

__all__ = [
    "atomic_save_npz",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable_dir",
    "fsync_dir",
    "remove_stale_temp_files",
    "write_npz",
]

# Directory fsync is impossible on Windows and unsupported by a few file
# systems (they answer EINVAL); there is nothing more to make durable then.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES}

#: The temporary file of ``name`` (``_open_temp``): ``.name.1a2b3c4d.tmp``.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]+\.tmp$")


def fsync_dir(path):
    """Flush a directory's entries (creations, renames, removals) to disk.

    A no-op on Windows and on file systems that do not support it.
    """
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def remove_stale_temp_files(directory, is_target):
    """Delete the temporary files of :func:`atomic_write` left in ``directory`` by a killed process.

    Only those of files ``name`` with ``is_target(name)`` true: a process still
    writing other files into ``directory`` keeps its own.
    """
    for entry in os.listdir(directory):
        match = _TEMP_NAME.match(entry)
        if match and is_target(match["target"]):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))


def _open_temp(directory, name):
    """Create and open a new temporary file next to ``name``; return (fd, path).

    ``os.open`` with mode 0o666 lets the umask decide the permissions, as for
    a file made by ``open(path, "w")`` (``tempfile.mkstemp`` would make 0o600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp_path = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp_path, flags, 0o666), tmp_path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a unique temporary file", directory)


@contextlib.contextmanager
def atomic_write(path, mode="wb", *, encoding=None, newline=None):
    """Open a temporary file that replaces ``path`` atomically when the block ends.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Its directory must exist.
    mode : {"wb", "w"}
        Binary or text.
    encoding, newline : str, optional
        For text mode, as :func:`open` (``encoding`` defaults to UTF-8).

    Yields
    ------
    file
        The open temporary file. Write to it; do not close it.

    Raises
    ------
    OSError
        When the directory is not writable, the disk is full, etc.; its
        ``filename`` (and message) is ``path``, the file being written. The
        target is then unchanged and no temporary file remains.

    Notes
    -----
    If the block raises (any exception, ``KeyboardInterrupt`` included), the
    temporary file is removed and ``path`` keeps its previous content (or
    stays absent).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    try:
        fd, tmp_path = _open_temp(directory, name)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        if mode == "w":
            f = open(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = open(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp_path)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        # Removing the temporary file may fail too (a folder made read-only
        # meanwhile): the error to report is still the first one.
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    fsync_dir(directory)


def _naming(exc, path):
    """A new OSError like ``exc`` whose message names ``path``, the file being written.

    A full disk's ENOSPC names no file; a failed ``os.open`` names the
    temporary one. The errno, and with it the class (``PermissionError``,
    ...), is kept.
    """
    if exc.errno is None:
        return type(exc)(f"{exc}: {path!r}")
    return OSError(exc.errno, exc.strerror, path)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically (UTF-8 by default, newlines as given)."""
    with atomic_write(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


def atomic_write_json(path, obj, *, indent=2, **json_kwargs):
    """Write ``obj`` as JSON to ``path`` atomically; NaN and inf are refused.

    Extra keyword arguments go to :func:`json.dumps`.
    """
    json_kwargs.setdefault("allow_nan", False)
    atomic_write_text(path, json.dumps(obj, indent=indent, **json_kwargs) + "\n")


def atomic_save_npz(path, arrays, *, compressed=False):
    """Save a mapping of name -> array as an ``.npz`` archive, atomically and without pickle.

    Parameters
    ----------
    path : str or os.PathLike
        The target file (written as given: no ``.npz`` is appended).
    arrays : mapping of str to array_like
        Names may hold ``/`` (``"params/W1"``); ``np.load`` gives them back as
        written.
    compressed : bool
        Deflate the members, as ``np.savez_compressed``.

    Raises
    ------
    ValueError
        For an object array (it would need pickle), or a non-string name.
    """
    with atomic_write(path, "wb") as f:
        write_npz(f, arrays, compressed=compressed)


def write_npz(file, arrays, *, compressed=False):
    """Write a mapping of name -> array as an ``.npz`` archive into the open binary ``file``, without pickle.

    What :func:`atomic_save_npz` writes, into any writable binary file
    (``io.BytesIO`` included). Raises ``ValueError`` as it does.
    """
    compression = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, mode="w", compression=compression, allowZip64=True) as zf:
        for key, value in arrays.items():
            if not isinstance(key, str):
                raise ValueError(f"array names must be strings, got {key!r}")
            array = np.asanyarray(value)
            if array.dtype.hasobject:
                raise ValueError(
                    f"array {key!r} has dtype {array.dtype}, which needs pickle; "
                    "store numbers or strings only"
                )
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def check_writable_dir(path, what="directory"):
    """Create ``path`` if needed and prove it writable by creating and removing a file.

    Returns the absolute path. Raises ``OSError`` (the original error class:
    ``PermissionError``, ``NotADirectoryError``, ...) with a message that names
    ``what`` and the path.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, tmp_path = _open_temp(path, "write-check")
        os.close(fd)
        os.unlink(tmp_path)
    except OSError as exc:
        message = f"{what} {path!r} is not a writable directory ({exc.strerror or exc})"
        args = (message,) if exc.errno is None else (exc.errno, message)
        raise type(exc)(*args) from exc
    return path
