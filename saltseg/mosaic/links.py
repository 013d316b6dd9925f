"""Neighbour candidates from the edge indexes, and links that pass the mutual ratio test.

For each axis (``"right"``: B right of A, ``"below"``: B below A), A's outgoing descriptor is
looked up among the incoming descriptors of all tiles (forward) and B's incoming descriptor among
the outgoing ones (backward). A link A -> B needs B to be A's nearest forward candidate and A to be
B's nearest backward candidate, a ratio ``1 - d1 / d2`` of at least ``min_ratio`` on both sides
and a distance of at most ``max_distance``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from saltseg.mosaic.config import MosaicConfig
from saltseg.mosaic.descriptors import degenerate_edges, edge_descriptors
from saltseg.mosaic.index import nearest

AXES = {"right": ("right", "left"), "below": ("bottom", "top")}
OFFSETS = {"right": (0, 1), "below": (1, 0)}
LINK_COLUMNS = ["a", "b", "side", "distance", "ratio"]


@dataclass
class Candidates:
    """Nearest candidates of every tile edge, by axis.

    Attributes:
        forward: axis -> ``(indices, distances)``, each ``(N, k)``: the tiles whose incoming edge
            is nearest to each tile's outgoing edge (-1 and inf where none, e.g. degenerate).
        backward: axis -> the same from each tile's incoming edge to the outgoing ones.
        descriptors: axis -> ``(outgoing, incoming)`` descriptors, each ``(N, D)``.
        valid: axis -> ``(outgoing, incoming)`` bool ``(N,)``: the edge is not degenerate.
    """

    forward: dict[str, tuple[np.ndarray, np.ndarray]]
    backward: dict[str, tuple[np.ndarray, np.ndarray]]
    descriptors: dict[str, tuple[np.ndarray, np.ndarray]]
    valid: dict[str, tuple[np.ndarray, np.ndarray]]

    def distance(self, a: np.ndarray, b: np.ndarray, axis: str) -> np.ndarray:
        """Descriptor distance of the pairs ``b`` right of / below ``a`` (NaN if degenerate)."""
        out_desc, in_desc = self.descriptors[axis]
        out_ok, in_ok = self.valid[axis]
        dist = np.linalg.norm(out_desc[a] - in_desc[b], axis=1)
        return np.where(out_ok[a] & in_ok[b], dist, np.nan)

    def ratio(self, a: np.ndarray, b: np.ndarray, axis: str) -> np.ndarray:
        """``1 - d / c`` of the pairs, ``c`` the nearest other candidate of ``a`` or of ``b``.

        The smaller value of the two sides: for mutual nearest candidates the ratio test's
        ``1 - d1 / d2``; negative when either tile has a nearer candidate (NaN if degenerate).
        """
        a, b = np.asarray(a), np.asarray(b)
        dist = self.distance(a, b, axis)
        f_idx, f_dist = self.forward[axis]
        b_idx, b_dist = self.backward[axis]
        rival_a = np.where(f_idx[a] != b[:, None], f_dist[a], np.inf).min(axis=1)
        rival_b = np.where(b_idx[b] != a[:, None], b_dist[b], np.inf).min(axis=1)
        rival = np.minimum(rival_a, rival_b).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = 1 - dist / rival
        return np.where(rival == 0, np.where(dist == 0, 0.0, -np.inf), ratio)


def _search(
    base: np.ndarray,
    base_ok: np.ndarray,
    query: np.ndarray,
    query_ok: np.ndarray,
    cfg: MosaicConfig,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(query)
    base_rows, query_rows = np.flatnonzero(base_ok), np.flatnonzero(query_ok)
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[base_rows] = np.arange(len(base_rows))
    found, dist = nearest(
        base[base_rows],
        query[query_rows],
        cfg.candidates,
        method=cfg.method,
        n_trees=cfg.n_trees,
        search_k=cfg.search_k,
        exclude_self=row_of[query_rows],
        seed=cfg.seed,
    )
    indices = np.full((n, cfg.candidates), -1, dtype=np.int64)
    distances = np.full((n, cfg.candidates), np.inf, dtype=np.float32)
    indices[query_rows] = np.where(found >= 0, base_rows[np.maximum(found, 0)], -1)
    distances[query_rows] = dist
    return indices, distances


def find_candidates(images: np.ndarray, config: MosaicConfig | None = None) -> Candidates:
    """Search the nearest candidates of every non-degenerate edge, both ways on both axes.

    Args:
        images: ``(N, H, W)`` tiles in [0, 1].
        config: Solver settings (defaults when None).
    """
    cfg = config or MosaicConfig()
    forward, backward, descriptors, valid = {}, {}, {}, {}
    for axis, (out_side, in_side) in AXES.items():
        out_desc, in_desc = edge_descriptors(images, out_side), edge_descriptors(images, in_side)
        out_ok = ~degenerate_edges(images, out_side, cfg.min_edge_std, cfg.max_flatness)
        in_ok = ~degenerate_edges(images, in_side, cfg.min_edge_std, cfg.max_flatness)
        forward[axis] = _search(in_desc, in_ok, out_desc, out_ok, cfg)
        backward[axis] = _search(out_desc, out_ok, in_desc, in_ok, cfg)
        descriptors[axis], valid[axis] = (out_desc, in_desc), (out_ok, in_ok)
    return Candidates(forward, backward, descriptors, valid)


def _ratio(dist: np.ndarray) -> np.ndarray:
    """``1 - d1 / d2`` per row (1 without a second candidate, 0 for two exact matches)."""
    d1, d2 = dist[:, 0].astype(np.float64), dist[:, 1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isinf(d2), 1.0, 1 - d1 / d2)
    return np.where(d2 > 0, ratio, 0.0)


def mutual_links(candidates: Candidates, config: MosaicConfig | None = None) -> pd.DataFrame:
    """Links that are mutual nearest candidates and pass the ratio and distance tests.

    Returns:
        A frame with columns ``a, b, side, distance, ratio`` (``a``, ``b`` tile positions,
        ``side`` ``"right"`` or ``"below"``: ``b`` is right of / below ``a``; ``ratio`` the
        smaller of the two sides' ratios), most confident first.
    """
    cfg = config or MosaicConfig()
    frames = []
    for axis in AXES:
        f_idx, f_dist = candidates.forward[axis]
        b_idx, b_dist = candidates.backward[axis]
        a = np.arange(len(f_idx))
        b = f_idx[:, 0]
        back = np.where(b >= 0, b_idx[np.maximum(b, 0), 0], -1)
        mutual = (b >= 0) & (back == a)
        ratio = np.minimum(_ratio(f_dist), _ratio(b_dist)[np.maximum(b, 0)])
        distance = f_dist[:, 0]
        keep = mutual & (ratio >= cfg.min_ratio) & (distance <= cfg.max_distance)
        frames.append(
            pd.DataFrame(
                {
                    "a": a[keep],
                    "b": b[keep],
                    "side": axis,
                    "distance": distance[keep],
                    "ratio": ratio[keep],
                }
            )
        )
    links = pd.concat(frames, ignore_index=True)
    return links.sort_values(["ratio", "distance"], ascending=[False, True], ignore_index=True)
