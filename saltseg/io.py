"""Atomic file writes: a file is either the old one or the complete new one, never half written.

Every writer goes through :func:`atomic_path`, which hands out a temporary name in the target's
folder and renames it onto the target only when the ``with`` block succeeds. The temporary name
is hidden (leading dot), carries the process id, and keeps the target's last suffix so libraries
that append an extension (``np.savez`` adds ``.npz``) write exactly where they are told::

    with atomic_path("run/oof.npz") as tmp:  # tmp = run/.oof.npz.1234.tmp.npz
        np.savez_compressed(tmp, mask=mask)

This module sits at the bottom of the package: it imports nothing from saltseg.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder that replaces ``path`` when the block succeeds.

    On an exception the temporary file (if any was written) is removed, ``path`` is left as it
    was, and the exception propagates. The parent folder must exist.

    Args:
        path: The file to write.

    Yields:
        The temporary path to write to, named ``.<name>.<pid>.tmp<suffix>``.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write bytes to ``path`` atomically.

    Args:
        data: The file's content.
        path: The file to write.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(text: str, path: str | Path) -> None:
    """Write UTF-8 text to ``path`` atomically.

    Args:
        text: The file's content, written as is (no newline added).
        path: The file to write.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(data: Any, path: str | Path) -> None:
    """Write ``data`` as JSON (indent 2, trailing newline) to ``path`` atomically.

    Args:
        data: Anything :func:`json.dumps` accepts.
        path: The file to write.
    """
    write_text(json.dumps(data, indent=2) + "\n", path)
