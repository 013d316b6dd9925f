"""Output folders of the commands that write several files (predict, mosaic, predict-volume).

Such a folder is saltseg's when it holds the command's manifest (``predict.json``), which lists
the files written (``outputs``). Before any work the folder is checked: a missing or empty folder
is used, an earlier result is replaced only with ``overwrite``, and a folder holding anything else
is refused; with ``names`` (the files the command will write), other files may stay in the folder
as long as none of them takes one of those names. New files are written into a hidden staging
folder inside the output folder (the same file system, so moving even large files is a rename)
and moved into place only when the command has finished; an interrupted command leaves the
earlier result as it was. Publishing is journalled: before the first file moves, a hidden journal
(``.<manifest>.publish.json``) records the staging folder, the new names and the earlier result's
files. The new files replace the old ones name by name, the earlier result's other files (and only
those) are removed, and the new manifest moves in last. A command killed while publishing leaves
the journal behind, and the next :class:`OutputFolder` on that folder completes the publish
before anything else, so the folder never holds a mix of two results.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from saltseg.errors import SaltsegError
from saltseg.io import write_json

_STAGING = re.compile(r"^\..+\.\d+\.staging$")
_DISK_MARGIN = 16 * 2**20

log = logging.getLogger(__name__)


def check_disk(path: Path, needed: int) -> None:
    """Refuse when the file system of ``path`` (or its nearest existing parent) has less than
    ``needed`` bytes free (plus a small margin)."""
    where = Path(path)
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < needed + _DISK_MARGIN:
        raise SaltsegError(
            f"not enough disk space in {path}: needs {needed / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB free"
        )


def check_folder_path(path: Path, what: str = "output folder") -> None:
    """Refuse a path that is a file or lies under a file (checked before anything is written)."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise SaltsegError(f"{what} {path}: {parent} is a file, not a folder")
            return


class OutputFolder:
    """A folder filled by one command; see the module docstring.

    Args:
        path: The folder.
        manifest: The command's manifest file name, e.g. ``predict.json``.
        overwrite: Replace an earlier result of the same command.
        names: The files the command will write. Given, the folder may also hold other files
            (kept as they are) as long as none of them takes one of these names.

    Raises:
        SaltsegError: the path is a file, holds files saltseg did not write (under one of
            ``names``, when given), or holds an earlier result and ``overwrite`` is off.
    """

    def __init__(
        self,
        path: str | Path,
        manifest: str,
        overwrite: bool = False,
        names: list[str] | None = None,
    ) -> None:
        self.path, self.manifest = Path(path), manifest
        check_folder_path(self.path)
        self.previous: list[Path] = []
        self.staging: Path | None = None
        self.created = False
        self._recover()
        entries = [e for e in self._entries() if not _STAGING.match(e.name)]
        if not entries:
            return
        manifest_path = self.path / manifest
        command = Path(manifest).stem
        if not manifest_path.is_file():
            if names is None:
                raise SaltsegError(
                    f"{self.path} is not empty and holds no {manifest}: choose a new or empty "
                    "folder (saltseg only replaces its own results)"
                )
            self._refuse_foreign([e.name for e in entries if e.name in names], command)
            return
        if not overwrite:
            raise SaltsegError(
                f"{self.path} holds an earlier result ({manifest}): pass --overwrite to replace it"
            )
        self.previous = [manifest_path, *self._listed(manifest_path)]
        if names is not None:
            listed = {e.name for e in self.previous}
            self._refuse_foreign(
                [e.name for e in entries if e.name in names and e.name not in listed], command
            )

    def _refuse_foreign(self, found: list[str], command: str) -> None:
        if found:
            raise SaltsegError(
                f"{self.path / sorted(found)[0]} was not written by {command}; choose another "
                "output folder"
            )

    def _entries(self) -> list[Path]:
        return list(self.path.iterdir()) if self.path.is_dir() else []

    def _listed(self, manifest_path: Path) -> list[Path]:
        """Entries of the folder that an earlier manifest lists in ``outputs``."""
        try:
            data = json.loads(manifest_path.read_text())
            names = data.get("outputs")
            if names is None:  # a manifest written before "outputs": the file names it lists
                names = [Path(str(v)).name for v in (data.get("files") or {}).values()]
        except (OSError, ValueError, AttributeError):
            raise SaltsegError(f"{manifest_path}: unreadable manifest") from None
        if not isinstance(names, list):
            raise SaltsegError(f"{manifest_path}: 'outputs' is not a list")
        entries = [self.path / Path(str(name)).name for name in names]
        return [e for e in entries if e.exists() or e.is_symlink()]

    def stage(self) -> Path:
        """Create and return the hidden staging folder (earlier staging leftovers are removed)."""
        self.created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        for entry in self._entries():
            if _STAGING.match(entry.name) and entry.is_dir():
                shutil.rmtree(entry)
        self.staging = self.path / f".{self.manifest}.{os.getpid()}.staging"
        self.staging.mkdir()
        return self.staging

    @property
    def journal(self) -> Path:
        """The publish journal (present only while, or after a kill during, :meth:`publish`)."""
        return self.path / f".{self.manifest}.publish.json"

    def publish(self, summary: dict[str, Any]) -> None:
        """Move the staged files into place (replacing the earlier result's files of the same
        name), remove the earlier result's other files, move in the manifest (with the names
        moved in as ``outputs``); journalled, see the module docstring."""
        assert self.staging is not None, "stage() first"
        names = sorted(entry.name for entry in self.staging.iterdir())
        previous = {entry.name for entry in self.previous}
        write_json({**summary, "outputs": names}, self.staging / self.manifest)
        plan = {
            "staging": self.staging.name,
            "outputs": names,
            "previous": sorted(previous - {self.manifest}),
        }
        self._pending(plan)  # before the journal: a refusal here leaves everything as it was
        write_json(plan, self.journal)
        self._finish(plan)

    def _pending(self, plan: dict[str, Any]) -> list[str]:
        """The plan's new files not moved yet; refuses when one of their names was taken by a
        file that is not the earlier result's (it appeared meanwhile)."""
        staging = self.path / plan["staging"]
        pending = [
            n for n in plan["outputs"] if (staging / n).exists() or (staging / n).is_symlink()
        ]
        for name in pending:
            target = self.path / name
            if name not in plan["previous"] and (target.exists() or target.is_symlink()):
                raise SaltsegError(
                    f"{target} appeared meanwhile and was not written by saltseg; the new files "
                    f"are in {staging}"
                )
        return pending

    def _finish(self, plan: dict[str, Any]) -> None:
        """Carry out a publish ``plan`` (safe to repeat after a kill at any point in it)."""
        staging = self.path / plan["staging"]
        for name in self._pending(plan):
            source, target = staging / name, self.path / name
            if target.exists() and (target.is_dir() or source.is_dir()):
                remove_entry(target)  # rename cannot replace a folder, nor a file by a folder
            os.replace(source, target)
        for name in plan["previous"]:
            if name not in plan["outputs"]:
                remove_entry(self.path / name)
        if (staging / self.manifest).exists():
            os.replace(staging / self.manifest, self.path / self.manifest)
        if staging.is_dir():
            staging.rmdir()
        self.journal.unlink()
        self.staging = None

    def _recover(self) -> None:
        """Complete a publish that a killed command left half done."""
        if not self.journal.is_file():
            return
        try:
            plan = json.loads(self.journal.read_text())
            lists = [plan["outputs"], plan["previous"]]
            names = [plan["staging"], *lists[0], *lists[1]]
            valid = all(isinstance(x, list) for x in lists) and all(
                isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")
                for n in names
            )
        except (OSError, ValueError, KeyError, TypeError):
            valid = False
        if not valid or not _STAGING.match(plan["staging"]):
            raise SaltsegError(
                f"{self.journal}: unreadable publish journal of an interrupted command; "
                "check the folder's files and remove the journal"
            )
        log.warning("%s: completing the publish of an interrupted command", self.path)
        self._finish(plan)

    def abort(self) -> None:
        """Drop the staged files (the earlier result stays), and the folder if :meth:`stage`
        created it and nothing else is in it."""
        if self.staging is not None and self.staging.exists():
            shutil.rmtree(self.staging)
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


def remove_entry(entry: Path) -> None:
    """Remove a file, link or folder (a link is removed, never followed); a missing one is fine."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)
