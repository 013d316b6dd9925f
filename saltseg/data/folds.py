"""k-fold splits stratified by salt coverage (and depth), written to folds.csv.

The coverage class is 0 for an empty mask and ``ceil(10 * coverage)`` (1..10) otherwise; with
``depth_bins > 1`` each class is split further by depth quantile. Within each stratum the tiles are
shuffled with the seed and dealt to the folds in turn, starting where the previous stratum
stopped, so fold sizes differ by at most one. With ``groups`` (e.g. mosaics from the jigsaw
solver) whole groups go to one fold, for validation without leaks between neighbouring tiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.errors import SaltsegError
from saltseg.io import atomic_path

FOLDS_COLUMNS = ["id", "fold", "coverage_class"]


def coverage_class(masks: np.ndarray) -> np.ndarray:
    """0 for empty masks, ``ceil(10 * coverage)`` (1..10) for the others."""
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    return np.ceil(coverage * 10).astype(np.int64)


def _strata(classes: np.ndarray, depths: np.ndarray | None, depth_bins: int) -> np.ndarray:
    if depths is None or depth_bins <= 1 or np.isnan(depths).all():
        return classes
    edges = np.nanquantile(depths, np.linspace(0, 1, depth_bins + 1)[1:-1])
    depth_class = np.searchsorted(edges, np.nan_to_num(depths, nan=np.nanmedian(depths)))
    return classes * depth_bins + depth_class


def make_folds(
    ids: list[str],
    masks: np.ndarray,
    k: int = 5,
    seed: int = 0,
    depths: np.ndarray | None = None,
    depth_bins: int = 2,
    groups: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Assign every tile to one of ``k`` folds.

    Args:
        ids: Tile ids.
        masks: bool ``(N, H, W)`` masks of those tiles.
        k: Number of folds (at least 2).
        seed: Shuffling seed; the same inputs and seed give the same folds.
        depths: Optional depths ``(N,)`` to stratify by depth quantile as well.
        depth_bins: Number of depth quantiles.
        groups: Optional id -> group; tiles of one group share a fold.

    Returns:
        A frame with columns ``id, fold, coverage_class``, in the order of ``ids``.
    """
    if k < 2:
        raise SaltsegError(f"k must be at least 2, got {k}")
    if len(ids) < k:
        raise SaltsegError(f"cannot split {len(ids)} tiles into {k} folds")
    classes = coverage_class(masks)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(ids), dtype=np.int64)
    if groups is None:
        strata = _strata(classes, depths, depth_bins)
        start = 0
        for stratum in np.unique(strata):
            members = rng.permutation(np.flatnonzero(strata == stratum))
            fold[members] = (start + np.arange(len(members))) % k
            start = (start + len(members)) % k
    else:
        absent = [i for i in ids if i not in groups]
        if absent:
            raise SaltsegError(f"no group for {len(absent)} tile(s), e.g. {absent[0]!r}")
        fold = _group_folds([groups[i] for i in ids], classes, k, rng)
    return pd.DataFrame({"id": ids, "fold": fold, "coverage_class": classes})


def _group_folds(labels: list[str], classes: np.ndarray, k: int, rng: np.random.Generator):
    """Greedy: largest groups first, each to the fold that most needs its coverage classes."""
    codes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    n_classes = int(classes.max()) + 1
    per_group = np.zeros((len(codes), n_classes))
    np.add.at(per_group, (inverse, classes), 1)
    sizes = per_group.sum(axis=1)
    order = np.lexsort((rng.random(len(codes)), -sizes))
    load = np.zeros((k, n_classes))
    group_fold = np.empty(len(codes), dtype=np.int64)
    for g in order:
        cost = (load + per_group[g]).sum(axis=1) + ((load + per_group[g]) ** 2).sum(axis=1) * 1e-3
        target = int(np.argmin(cost))
        group_fold[g] = target
        load[target] += per_group[g]
    return group_fold[inverse]


def write_folds(frame: pd.DataFrame, path: str | Path) -> None:
    """Write folds.csv atomically: ``id``, ``fold`` and ``coverage_class`` when known."""
    columns = [c for c in FOLDS_COLUMNS if c in frame.columns]
    with atomic_path(path) as tmp:
        frame[columns].to_csv(tmp, index=False)


def read_folds(
    path: str | Path, ids: list[str] | None = None, k: int | None = None
) -> pd.DataFrame:
    """Read folds.csv and check it against the data.

    Args:
        path: The folds.csv file.
        ids: When given, the folds must list exactly these ids.
        k: When given, folds must be numbered ``0..k-1``.

    Raises:
        SaltsegError: a missing or malformed file, duplicate ids, or a mismatch with the data.
    """
    path = Path(path)
    if not path.exists():
        raise SaltsegError(f"folds file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SaltsegError(f"{path}: malformed CSV ({str(err).splitlines()[0]})") from None
    if not {"id", "fold"} <= set(frame.columns):
        raise SaltsegError(f"{path}: needs columns id,fold; found {list(frame.columns)}")
    if frame["id"].duplicated().any():
        raise SaltsegError(
            f"{path}: duplicate id {frame['id'][frame['id'].duplicated()].iloc[0]!r}"
        )
    if not pd.api.types.is_integer_dtype(frame["fold"]) or (frame["fold"] < 0).any():
        raise SaltsegError(f"{path}: fold must be a non-negative integer")
    if k is not None and frame["fold"].max() >= k:
        raise SaltsegError(f"{path}: fold {frame['fold'].max()} out of range for k={k}")
    if ids is not None:
        known, wanted = set(frame["id"]), set(ids)
        if wanted - known:
            raise SaltsegError(
                f"{path} does not match the data: {len(wanted - known)} tile(s) have no fold, "
                f"e.g. {sorted(wanted - known)[0]!r}"
            )
        if known - wanted:
            raise SaltsegError(
                f"{path} does not match the data: {len(known - wanted)} id(s) not in the data, "
                f"e.g. {sorted(known - wanted)[0]!r}"
            )
    return frame
