"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

Write to a temporary file in the destination's directory, flush + fsync it,
``os.replace`` it over the destination (atomic on POSIX within one file system),
then fsync the directory so the rename itself survives a crash.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file, then atomically move it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | os.PathLike) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """torch.save ``obj`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def rng_state_to_tensors(state: dict) -> dict:
    """numpy PCG64 state (128-bit ints) -> something torch.load(weights_only=True) reads."""
    return {"bit_generator": state["bit_generator"],
            "state": str(state["state"]["state"]), "inc": str(state["state"]["inc"]),
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def rng_state_from_tensors(saved: dict) -> dict:
    return {"bit_generator": saved["bit_generator"],
            "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
            "has_uint32": saved["has_uint32"], "uinteger": saved["uinteger"]}
