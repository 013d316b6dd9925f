"""Score links and mosaics against a known layout (``mosaic_truth.csv``: id, section, row, col).

A true link is a pair of tiles of one section with ``b`` at ``(row, col + 1)`` of ``a``
(``"right"``) or at ``(row + 1, col)`` (``"below"``). A mosaic is scored by its tile pairs: a pair
is right when both tiles come from one section with the same offset between them as in the
mosaic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saltseg.errors import SaltsegError
from saltseg.mosaic.links import OFFSETS


def true_links(truth: pd.DataFrame) -> pd.DataFrame:
    """Every true ``a, b, side`` of a layout with columns ``id, section, row, col``."""
    frames = []
    for side, (dr, dc) in OFFSETS.items():
        moved = truth.assign(row=truth["row"] - dr, col=truth["col"] - dc)
        both = truth.merge(moved, on=["section", "row", "col"], suffixes=("_a", "_b"))
        frames.append(pd.DataFrame({"a": both["id_a"], "b": both["id_b"], "side": side}))
    return pd.concat(frames, ignore_index=True)


def _check_ids(ids: pd.Series, truth: pd.DataFrame, what: str) -> None:
    unknown = ids[~ids.isin(truth["id"])]
    if len(unknown):
        raise SaltsegError(
            f"{what} has {len(unknown)} id(s) not in the truth, e.g. {unknown.iloc[0]!r}"
        )


def evaluate_links(truth: pd.DataFrame, links: pd.DataFrame) -> dict[str, float]:
    """Precision and recall of links (``a, b, side``) against the truth.

    Returns:
        ``links``, ``true_links``, ``correct``, ``precision`` (1 when there are no links) and
        ``recall`` (1 when there is nothing to find).
    """
    _check_ids(pd.concat([links["a"], links["b"]]), truth, "links")
    found = links[["a", "b", "side"]].drop_duplicates()
    truth_links = true_links(truth)
    correct = len(found.merge(truth_links, on=["a", "b", "side"]))
    return {
        "links": len(found),
        "true_links": len(truth_links),
        "correct": correct,
        "precision": correct / len(found) if len(found) else 1.0,
        "recall": correct / len(truth_links) if len(truth_links) else 1.0,
    }


def _pairs(sizes: pd.Series) -> int:
    values = sizes.to_numpy(dtype=np.int64)
    return int((values * (values - 1) // 2).sum())


def evaluate_mosaics(truth: pd.DataFrame, mosaics: pd.DataFrame) -> dict[str, float]:
    """Share of tile pairs within predicted mosaics whose relative offset is right.

    Args:
        truth: ``id, section, row, col``.
        mosaics: ``id, mosaic, row, col``.

    Returns:
        ``mosaics`` (count), ``largest`` (tiles), ``pairs`` (tile pairs sharing a mosaic),
        ``correct_pairs`` and ``pair_accuracy`` (1 when no two tiles share a mosaic).
    """
    _check_ids(mosaics["id"], truth, "mosaics")
    both = mosaics.merge(truth, on="id", suffixes=("", "_true"))
    both = both.assign(dr=both["row_true"] - both["row"], dc=both["col_true"] - both["col"])
    pairs = _pairs(both.groupby("mosaic").size())
    correct = _pairs(both.groupby(["mosaic", "section", "dr", "dc"]).size())
    sizes = mosaics.groupby("mosaic").size()
    return {
        "mosaics": len(sizes),
        "largest": int(sizes.max()) if len(sizes) else 0,
        "pairs": pairs,
        "correct_pairs": correct,
        "pair_accuracy": correct / pairs if pairs else 1.0,
    }
