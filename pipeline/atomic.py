"""Atomic file writes: every output appears whole or not at all.

Snakemake and DVC decide what to rerun from which files exist; a half-written file that exists would
be taken as complete. So every writer here writes a temporary file in the destination directory,
fsyncs it, and renames it over the target (rename is atomic within one filesystem).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # read-only or full: name the output, not a random temporary name
        exc.filename = str(path)
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates 0600; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # A failed write() (disk full, file-size limit) names no file; name the output, not the temp file.
            exc.filename = str(path)
        raise


@contextlib.contextmanager
def all_or_none(*paths: str | os.PathLike) -> Iterator[None]:
    """Remove every one of ``paths`` if the block raises.

    For stages with several outputs: each file is atomic on its own, but a failure between two writes
    (disk full on the second) would leave one new output beside an old or missing one.
    """
    try:
        yield
    except BaseException:
        for p in paths:
            with contextlib.suppress(OSError):  # best effort: never hide the error that brought us here
                Path(p).unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` atomically, byte-identical for identical arrays.

    ``np.savez`` stamps each member with the current time, so two identical runs would give
    different bytes (and different DVC hashes); members here carry a fixed timestamp instead.
    The result loads with ``np.load`` like any ``.npz``.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def write_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically and byte-reproducibly.

    torch.save names the records inside its zip after the file it writes to, so saving to a random
    temporary name would give different bytes (and DVC hashes) for identical tensors: serialise to
    memory (records named ``archive/``) and write those bytes instead.
    """
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def read_torch(path: str | os.PathLike, fmt: int, what: str, fix: str, error: type[Exception] = RuntimeError,
               map_location: Any = "cpu") -> dict:
    """Load a ``{"format": fmt, ...}`` dict that ``write_torch`` wrote, with ``weights_only=True``.

    Anything else (a pickle of arbitrary objects, another format) raises ``error`` naming ``path``,
    ``what`` it should have been and the ``fix``.
    """
    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors differ by torch version; all mean "not a safe state dict"
        raise error(f"{path} is not a {what} this pipeline wrote (torch.load(weights_only=True) refused it: "
                    f"{exc}). {fix}") from exc
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise error(f"{path} is not a format-{fmt} {what} of this pipeline. {fix}")
    return obj


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically (e.g. matplotlib's savefig).

    Not for torch.save: use ``write_torch``, whose bytes do not depend on the file name.
    """
    with atomic_path(path) as tmp:
        writer(tmp)
