"""Writers fed one chunk of tiles at a time: the submission CSV and probabilities.

Each file is written under a temporary name and renamed into place when complete, so an
interrupted prediction never leaves a truncated submission or probability file behind.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import numpy as np

from saltseg.errors import SaltsegError
from saltseg.io import temp_path
from saltseg.rle import rle_encode


class _Atomic:
    """A file written to ``.NAME.PID.tmp`` and renamed to ``path`` by :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _finish(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._finish()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        """Drop the temporary file."""
        try:
            self._finish()
        finally:
            self.tmp.unlink(missing_ok=True)


class SubmissionWriter(_Atomic):
    """``id,rle_mask`` rows in the order given; :meth:`close` checks that all ``ids`` came.

    Ids are written as CSV fields (quoted when they hold a comma, quote or line break).
    """

    def __init__(self, path: str | Path, ids: list[str]) -> None:
        super().__init__(path)
        self.expected = ids
        self.written = 0
        self.handle: IO[str] = open(self.tmp, "w", newline="")  # noqa: SIM115 - closed by close
        self.rows = csv.writer(self.handle, lineterminator="\n")
        self.rows.writerow(["id", "rle_mask"])

    def write(self, ids: list[str], masks: np.ndarray) -> None:
        """Append the rows of ``ids`` with their masks ``(n, 101, 101)``."""
        if ids != self.expected[self.written : self.written + len(ids)]:
            raise SaltsegError(f"submission rows out of order at id {ids[0]!r}")
        self.rows.writerows((i, rle_encode(m)) for i, m in zip(ids, masks, strict=True))
        self.written += len(ids)

    def _finish(self) -> None:
        self.handle.close()

    def close(self) -> None:
        """Move the CSV into place once every id has its row."""
        if self.written != len(self.expected):
            self.abort()
            raise SaltsegError(f"{self.path}: {self.written} of {len(self.expected)} rows written")
        super().close()


class ProbWriter(_Atomic):
    """An ``.npz`` of ``ids``, ``mask`` (float16 ``(N, 101, 101)``) and optionally ``cls``.

    The mask array is streamed into the archive chunk by chunk (stored, not compressed), so the
    whole array is never in memory; ``np.load`` reads the result as any ``.npz``.
    """

    def __init__(self, path: str | Path, ids: list[str], shape: tuple[int, int] = (101, 101)):
        super().__init__(path)
        self.n, self.written, self.classes = len(ids), 0, []
        self.zip = zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True)
        with self.zip.open("ids.npy", "w") as handle:
            np.lib.format.write_array(handle, np.array(ids))
        self.entry = self.zip.open("mask.npy", "w", force_zip64=True)
        header = {"descr": "<f2", "fortran_order": False, "shape": (self.n, *shape)}
        np.lib.format.write_array_header_2_0(self.entry, header)

    def write(self, mask: np.ndarray, cls: np.ndarray | None = None) -> None:
        """Append probabilities of the next tiles."""
        self.entry.write(np.ascontiguousarray(mask, dtype="<f2").tobytes())
        self.written += len(mask)
        if cls is not None:
            self.classes.append(np.asarray(cls, dtype=np.float32))

    def _finish(self) -> None:
        if self.entry is not None:
            self.entry.close()
            self.entry = None
        if self.zip.fp is not None:
            if self.classes and self.written == self.n:
                with self.zip.open("cls.npy", "w") as handle:
                    np.lib.format.write_array(handle, np.concatenate(self.classes))
            self.zip.close()

    def close(self) -> None:
        """Move the archive into place once every tile is written."""
        if self.written != self.n:
            self.abort()
            raise SaltsegError(f"{self.path}: {self.written} of {self.n} tiles written")
        super().close()
