"""The run folder: the one module that knows its layout, creates it, and reads it back.

A run folder holds::

    run.json             marks the folder as a saltseg run (format, version)
    config.yaml          the resolved recipe
    folds.csv            the split (id, fold, coverage_class)
    fold_K/best.ckpt     best epoch by the validation competition metric (self-describing)
    fold_K/last.ckpt     the last finished epoch, for --resume (without the optimizer state
                         once the fold is finished)
    fold_K/metrics.csv   per-epoch losses, validation metrics and wall time (epoch_seconds;
                         fold_K/logs: one per attempt)
    fold_K/oof.npz       ids and probabilities (float16) of the fold's validation tiles
    fold_K/score.json    best epoch and out-of-fold score of the fold
    oof_score.json       the out-of-fold score of the whole run
    postprocess.json     threshold, minimum area, peak and classifier gates tuned on out-of-fold
    onnx/fold_K.onnx     exported fold models
    .replaced/           while a run started with overwrite is training: the run it replaces

Training writes through :class:`Run`; inference, export and the report read through it.
Checkpoints are read with ``torch.load(weights_only=True)``: a file that needs full unpickling
is refused, so loading a run never runs foreign code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from saltseg.checkpoints import load_model
from saltseg.config import Config, load_config, save_config
from saltseg.data.folds import read_folds, write_folds
from saltseg.data.tgs import TileSet
from saltseg.errors import SaltsegError
from saltseg.io import atomic_path, write_json
from saltseg.outputs import remove_entry
from saltseg.postprocess import PostProcess, load_postprocess, save_postprocess, tune_postprocess

MARKER = "run.json"
CONFIG = "config.yaml"
FOLDS = "folds.csv"
OOF_SCORE = "oof_score.json"
POSTPROCESS = "postprocess.json"
ONNX_DIR = "onnx"
REPLACED = ".replaced"
FORMAT = {"format": "saltseg-run", "version": 1}

_FOLD_DIR = re.compile(r"^fold_(\d+)$")
_FOLD_ENTRIES = (
    "best.ckpt",
    "last.ckpt",
    "metrics.csv",
    "oof.npz",
    "score.json",
    "logs",
    "tensorboard",
)
_TEMP = re.compile(r"^\..+\.\d+\.tmp(\..+)?$")  # names handed out by saltseg.io.atomic_path


def fold_of_dir(path: Path) -> int | None:
    """The fold index of a ``fold_K`` folder name, None for any other name."""
    match = _FOLD_DIR.match(path.name)
    return int(match.group(1)) if match else None


@dataclass
class FoldModel:
    """One fold model of a run.

    Attributes:
        fold: The fold index.
        checkpoint: ``best.ckpt``, else ``last.ckpt``.
        score: The fold's out-of-fold score, when ``score.json`` exists.
    """

    fold: int
    checkpoint: Path
    score: float | None


class Run:
    """A saltseg run folder (see the module docstring for its layout).

    Args:
        root: The folder. Nothing is read or written until a method is called; use
            :meth:`open` for a run that must exist.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    # --- paths ----------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def folds_path(self) -> Path:
        return self.root / FOLDS

    @property
    def postprocess_path(self) -> Path:
        return self.root / POSTPROCESS

    @property
    def oof_score_path(self) -> Path:
        return self.root / OOF_SCORE

    def fold_dir(self, fold: int) -> Path:
        """``RUN/fold_K``."""
        return self.root / f"fold_{fold}"

    def checkpoint_path(self, fold: int, which: str = "best") -> Path:
        """``RUN/fold_K/best.ckpt`` or ``last.ckpt``."""
        return self.fold_dir(fold) / f"{which}.ckpt"

    def metrics_path(self, fold: int) -> Path:
        return self.fold_dir(fold) / "metrics.csv"

    def logs_dir(self, fold: int) -> Path:
        return self.fold_dir(fold) / "logs"

    def oof_path(self, fold: int) -> Path:
        return self.fold_dir(fold) / "oof.npz"

    def score_path(self, fold: int) -> Path:
        return self.fold_dir(fold) / "score.json"

    def onnx_path(self, fold: int, folder: str | Path | None = None) -> Path:
        """``RUN/onnx/fold_K.onnx`` (or ``folder/fold_K.onnx``)."""
        return (Path(folder) if folder is not None else self.root / ONNX_DIR) / f"fold_{fold}.onnx"

    # --- what the folder is ---------------------------------------------------------------------

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` is a saltseg run folder (its marker, or a run made before markers:
        a ``config.yaml`` that is a valid recipe beside a ``folds.csv``)."""
        path = Path(path)
        if (path / MARKER).is_file():
            return True
        if not ((path / CONFIG).is_file() and (path / FOLDS).is_file()):
            return False
        try:
            load_config(path / CONFIG)
        except SaltsegError:
            return False
        return True

    @classmethod
    def open(cls, root: str | Path) -> Run:
        """An existing run.

        Raises:
            SaltsegError: the folder does not exist or is not a saltseg run.
        """
        root = Path(root)
        if not root.is_dir():
            raise SaltsegError(f"run folder {root} does not exist")
        if not cls.is_run(root):
            raise SaltsegError(f"{root} is not a saltseg run folder (no {MARKER} or {CONFIG})")
        return cls(root)

    def check_new(self, resume: bool = False, overwrite: bool = False) -> None:
        """Check, writing nothing, that a run may be started (or resumed) in this folder.

        A new run needs a missing or empty folder, or ``overwrite`` and a folder that holds a
        saltseg run; a folder with other content is never used.

        Raises:
            SaltsegError: the path is a file or under one, a non-empty folder that is not a run,
                a run without ``resume``/``overwrite``, or nothing to resume.
        """
        root = self.root
        for parent in [root, *root.parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise SaltsegError(f"run folder {root}: {parent} is a file, not a folder")
                break
        is_run = root.is_dir() and self.is_run(root)
        if resume:
            if not is_run:
                raise SaltsegError(f"nothing to resume: {root} holds no saltseg run")
            return
        if not root.exists() or not any(root.iterdir()):
            return
        if not is_run:
            raise SaltsegError(
                f"{root} is not empty and holds no saltseg run: choose a new or empty folder "
                "(saltseg only replaces its own runs)"
            )
        if not overwrite:
            raise SaltsegError(
                f"run folder {root} already holds a run: use --resume to continue it "
                "or --overwrite to start again"
            )

    def owned_entries(self) -> list[Path]:
        """The entries of the folder that saltseg wrote (what ``overwrite`` may remove)."""
        if not self.root.is_dir():
            return []
        names = {MARKER, CONFIG, FOLDS, OOF_SCORE, POSTPROCESS, REPLACED}
        owned = []
        for entry in self.root.iterdir():
            if entry.name in names or _TEMP.match(entry.name):
                owned.append(entry)
            elif entry.is_dir() and fold_of_dir(entry) is not None:
                owned += [entry / n for n in _FOLD_ENTRIES if (entry / n).exists()]
                owned += [e for e in entry.iterdir() if _TEMP.match(e.name)]
            elif entry.name == ONNX_DIR and entry.is_dir():
                owned += [e for e in entry.iterdir() if re.match(r"^fold_\d+\.onnx$", e.name)]
                owned += [e for e in entry.iterdir() if _TEMP.match(e.name)]
        return sorted(owned)

    def _set_aside(self) -> None:
        """Move the run's own files into ``.replaced/`` (kept until :meth:`drop_replaced`).

        When ``.replaced/`` already holds a run (an earlier overwrite never finished), that run
        stays there and the unfinished files are removed instead.
        """
        aside = self.root / REPLACED
        keep_old = aside.exists()
        for entry in self.owned_entries():
            if entry == aside:
                continue
            if keep_old:
                remove_entry(entry)
            else:
                target = aside / entry.relative_to(self.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                entry.rename(target)
        for folder in [*self.root.glob("fold_*"), self.root / ONNX_DIR]:  # now-empty folders
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def drop_replaced(self) -> None:
        """Delete the run that an overwrite set aside (call once the new run is complete)."""
        remove_entry(self.root / REPLACED)

    def initialise(
        self,
        config: Config,
        folds: pd.DataFrame,
        resume: bool = False,
        overwrite: bool = False,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Write a new run's marker, config and split (call after every check has passed).

        With ``overwrite`` the files of the run already there (only those; anything else in the
        folder stays) are moved into ``.replaced/``, which :meth:`drop_replaced` deletes when the
        new run is complete: an interrupted overwrite loses nothing. With ``resume`` only
        ``folds.csv`` is rewritten.

        Args:
            config: The resolved recipe.
            folds: The split.
            resume: Continue the run in the folder.
            overwrite: Replace the run in the folder.
            info: Extra facts recorded in ``run.json`` (e.g. the run's ancestry).
        """
        self.check_new(resume, overwrite)
        if not resume:
            if overwrite:
                self._set_aside()
            self.root.mkdir(parents=True, exist_ok=True)
            write_json({**FORMAT, **(info or {})}, self.root / MARKER)
            save_config(config, self.config_path)
        write_folds(folds, self.folds_path)

    # --- reading --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The contents of ``run.json`` ({} for a run made before markers)."""
        path = self.root / MARKER
        return read_json(path) if path.exists() else {}

    def config(self) -> Config:
        """The run's resolved recipe."""
        return load_config(self.config_path)

    def folds_frame(self, ids: list[str] | None = None, k: int | None = None) -> pd.DataFrame:
        """The run's split (``id``, ``fold``, ...), checked against ``ids`` and ``k`` if given."""
        if not self.folds_path.is_file():
            raise SaltsegError(f"{self.root}: no {FOLDS}")
        return read_folds(self.folds_path, ids=ids, k=k)

    def folds(self) -> list[int]:
        """Indices of the ``fold_K`` folders present, sorted."""
        if not self.root.is_dir():
            return []
        found = (fold_of_dir(p) for p in self.root.iterdir() if p.is_dir())
        return sorted(f for f in found if f is not None)

    def fold_models(self) -> list[FoldModel]:
        """Every fold with a checkpoint (``best.ckpt``, else ``last.ckpt``) and its score."""
        models = []
        for fold in self.folds():
            for which in ("best", "last"):
                path = self.checkpoint_path(fold, which)
                if path.is_file():
                    models.append(FoldModel(fold, path, self.fold_score(fold)))
                    break
        return models

    def fold_score(self, fold: int) -> float | None:
        """The fold's out-of-fold score from ``score.json`` (None when absent)."""
        path = self.score_path(fold)
        if not path.exists():
            return None
        value = read_json(path).get("oof_score")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SaltsegError(f"{path}: no numeric 'oof_score'")
        return float(value)

    def fold_summary(self, fold: int) -> dict[str, Any] | None:
        """The whole ``score.json`` of a fold (None when absent: the fold has not finished)."""
        path = self.score_path(fold)
        return read_json(path) if path.exists() else None

    def oof_summary(self) -> dict[str, Any] | None:
        """``oof_score.json`` (None when absent)."""
        return read_json(self.oof_score_path) if self.oof_score_path.exists() else None

    def postprocess(self) -> PostProcess | None:
        """The tuned post-processing (None when the run was never tuned)."""
        path = self.postprocess_path
        return load_postprocess(path) if path.exists() else None

    def oof(self) -> dict[str, Any]:
        """All out-of-fold probabilities, sorted by id: ``ids``, ``mask``, ``fold`` and ``cls``
        (when every fold has a classifier)."""
        folds = [f for f in self.folds() if self.oof_path(f).is_file()]
        if not folds:
            raise SaltsegError(f"{self.root}: no out-of-fold predictions (fold_K/oof.npz)")
        ids: list[str] = []
        masks, classes, fold_of = [], [], []
        for fold in folds:
            data = read_oof(self.oof_path(fold))
            ids += data["ids"]
            masks.append(data["mask"])
            if "cls" in data:
                classes.append(data["cls"])
            fold_of += [fold] * len(data["ids"])
        order = np.argsort(ids)
        result = {
            "ids": [ids[i] for i in order],
            "mask": np.concatenate(masks)[order],
            "fold": np.array(fold_of)[order],
        }
        if len(ids) != len(set(ids)):
            raise SaltsegError(f"{self.root}: a tile is out-of-fold in two folds")
        if len(classes) == len(folds):
            result["cls"] = np.concatenate(classes)[order]
        return result

    def load_model(self, fold: int) -> tuple[nn.Module, Config, dict[str, Any]]:
        """The model of a fold (``best.ckpt``, else ``last.ckpt``); see :func:`load_model`."""
        for which in ("best", "last"):
            path = self.checkpoint_path(fold, which)
            if path.is_file():
                return load_model(path)
        raise SaltsegError(f"{self.fold_dir(fold)}: no checkpoint (best.ckpt or last.ckpt)")

    # --- writing --------------------------------------------------------------------------------

    def save_oof(self, fold: int, ids: list[str], probs: dict[str, np.ndarray]) -> None:
        """Write a fold's out-of-fold probabilities (masks as float16)."""
        arrays = {"ids": np.array(ids), "mask": probs["mask"].astype(np.float16)}
        if "cls" in probs:
            arrays["cls"] = probs["cls"].astype(np.float32)
        with atomic_path(self.oof_path(fold)) as tmp:
            np.savez_compressed(tmp, **arrays)

    def save_fold_score(self, fold: int, score: dict[str, Any]) -> None:
        write_json(score, self.score_path(fold))

    def save_oof_summary(self, summary: dict[str, Any]) -> None:
        write_json(summary, self.oof_score_path)

    def save_postprocess(self, pp: PostProcess) -> Path:
        save_postprocess(pp, self.postprocess_path)
        return self.postprocess_path


def oof_rows(ids: list[str], tiles: TileSet, data: str | Path | None = None) -> np.ndarray:
    """Positions in ``tiles`` of out-of-fold ``ids`` (in the order of ``ids``).

    Args:
        ids: Out-of-fold tile ids.
        tiles: The training tiles the run was trained on.
        data: Their folder, named in the error.

    Raises:
        SaltsegError: some ids are not among the tiles.
    """
    index = {tile_id: i for i, tile_id in enumerate(tiles.ids)}
    missing = [i for i in ids if i not in index]
    if missing:
        where = data if data is not None else "the training data"
        raise SaltsegError(
            f"{where}: {len(missing)} out-of-fold id(s) not among the training tiles, "
            f"e.g. {missing[0]!r}"
        )
    return np.array([index[i] for i in ids], dtype=np.int64)


def tune_oof(
    oof: dict[str, Any], tiles: TileSet, config: Config, data: str | Path | None = None
) -> PostProcess:
    """Tune post-processing on out-of-fold probabilities against the masks of ``tiles``.

    Only the folds trained so far have out-of-fold predictions; the settings are tuned on
    those, and ``info`` says which they were.

    Args:
        oof: Out-of-fold predictions as :meth:`Run.oof` returns them (``ids``, ``mask``,
            ``fold``, maybe ``cls``), of one run or the mean of several.
        tiles: The labelled training tiles.
        config: The run's recipe: ``trainer.threshold`` is the threshold of the score before
            tuning, ``data.k`` its number of folds.
        data: The tiles' folder, named in errors.

    Returns:
        The tuned settings; ``info`` holds the scores before and after, the number of tiles,
        ``folds`` (those whose out-of-fold tiles were used) and ``complete`` (whether they are
        all ``k`` folds).
    """
    if tiles.masks is None:
        raise SaltsegError("tuning post-processing needs labelled tiles (masks)")
    rows = oof_rows(oof["ids"], tiles, data)
    pp = tune_postprocess(
        tiles.masks[rows],
        oof["mask"],
        tiles.images[rows],
        oof.get("cls"),
        base_threshold=config.trainer.threshold,
    )
    folds = sorted(int(f) for f in np.unique(oof["fold"]))
    pp.info.update(folds=folds, complete=folds == list(range(config.data.k)))
    return pp


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a run file; anything else is a one-line error naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SaltsegError(f"{path}: unreadable JSON ({err})") from None
    if not isinstance(data, dict):
        raise SaltsegError(f"{path}: expected a JSON object")
    return data


def read_oof(path: Path) -> dict[str, Any]:
    """One ``oof.npz``: ``ids`` (list), ``mask`` float32 ``(N, H, W)``, maybe ``cls`` ``(N,)``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = [str(i) for i in data["ids"]]
            mask = data["mask"].astype(np.float32)
            cls = data["cls"].astype(np.float32) if "cls" in data else None
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise SaltsegError(f"{path}: not a readable out-of-fold file ({err})") from None
    except Exception as err:  # noqa: BLE001 - zipfile raises BadZipFile and others on junk
        raise SaltsegError(f"{path}: not a readable out-of-fold file ({err})") from None
    if mask.ndim != 3 or len(mask) != len(ids) or (cls is not None and cls.shape != (len(ids),)):
        raise SaltsegError(f"{path}: arrays of inconsistent shapes")
    result: dict[str, Any] = {"ids": ids, "mask": mask}
    if cls is not None:
        result["cls"] = cls
    return result
