"""Assemble links into mosaics: integer (row, col) per tile, one tile per cell.

Links are taken most confident first into a union-find whose members carry their offset from the
group's origin; a link that would contradict the positions already fixed, or put two tiles in one
cell, is rejected. A join of two groups also checks every seam it creates, not only the link's
own: it is refused when too many of them look wrong. Then candidate pairs that are not links on
their own (they failed the ratio test, or are second choices) vote for an offset between two
mosaics; mosaics are joined where at least ``min_support`` distinct pairs agree, which closes
loops such as A-right-B, B-below-D, A-below-C, C-right-D. Every tile ends in exactly one
mosaic; singletons are mosaics of size 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saltseg.mosaic.config import MosaicConfig
from saltseg.mosaic.links import AXES, OFFSETS, Candidates

MOSAIC_COLUMNS = ["mosaic", "row", "col"]
GOOD_SEAM_RATIO = -0.2  # a seam counts for a join when its pair is nearly the nearest candidate
BAD_SEAM_RATIO = -0.5  # and against it when a rival candidate is 1.5 times nearer


class Layout:
    """Groups of tiles with integer positions, merged smaller-into-larger.

    Args:
        n_tiles: Number of tiles; each starts alone at (0, 0).
        candidates: Nearest candidates, to check the seams of every join (no check when None).
        good_distance: Largest distance of a seam that counts for a join.

    Attributes:
        root: ``(N,)`` group of each tile (the id of one of its tiles).
        row, col: ``(N,)`` position of each tile in its group's frame.
    """

    def __init__(
        self, n_tiles: int, candidates: Candidates | None = None, good_distance: float = 0.9
    ) -> None:
        self._candidates = candidates
        self._good = good_distance
        self.root = np.arange(n_tiles)
        self.row = np.zeros(n_tiles, dtype=np.int64)
        self.col = np.zeros(n_tiles, dtype=np.int64)
        self._members: dict[int, list[int]] = {i: [i] for i in range(n_tiles)}
        self._cells: dict[int, dict[tuple[int, int], int]] = {
            i: {(0, 0): i} for i in range(n_tiles)
        }

    def size(self, tile: int) -> int:
        """Number of tiles in the group of ``tile``."""
        return len(self._members[int(self.root[tile])])

    def consistent(self, a: int, b: int, dr: int, dc: int) -> bool:
        """Whether ``b`` sits at ``a + (dr, dc)`` in one group."""
        return bool(
            self.root[a] == self.root[b]
            and self.row[b] - self.row[a] == dr
            and self.col[b] - self.col[a] == dc
        )

    def join(self, a: int, b: int, dr: int, dc: int) -> bool:
        """Place ``b`` at ``a + (dr, dc)``, moving its whole group.

        Refused (False) when two tiles would share a cell, when ``b`` already sits elsewhere in
        the group of ``a``, or (with candidates) when the seams the join creates that look wrong
        (a rival candidate 1.5 times nearer on either side) outnumber half of those that look
        right (within ``good_distance``, no rival much nearer). Degenerate seams do not count.
        """
        ra, rb = int(self.root[a]), int(self.root[b])
        if ra == rb:
            return self.consistent(a, b, dr, dc)
        shift_r = int(self.row[a] + dr - self.row[b])
        shift_c = int(self.col[a] + dc - self.col[b])
        if len(self._members[ra]) < len(self._members[rb]):
            ra, rb, shift_r, shift_c = rb, ra, -shift_r, -shift_c
        big, moved = self._cells[ra], self._members[rb]
        rows, cols = self.row[moved] + shift_r, self.col[moved] + shift_c
        cells = list(zip(rows.tolist(), cols.tolist(), strict=True))
        if any(cell in big for cell in cells):
            return False
        if self._candidates is not None and not self._seams_agree(big, moved, cells):
            return False
        for tile, r, c in zip(moved, rows.tolist(), cols.tolist(), strict=True):
            big[(r, c)] = tile
        self.row[moved], self.col[moved], self.root[moved] = rows, cols, ra
        self._members[ra].extend(moved)
        del self._members[rb], self._cells[rb]
        return True

    def _seams_agree(
        self, big: dict[tuple[int, int], int], moved: list[int], cells: list[tuple[int, int]]
    ) -> bool:
        """Whether the seams a join creates look like true seams more often than not."""
        pairs: dict[str, list[tuple[int, int]]] = {"right": [], "below": []}
        for tile, (r, c) in zip(moved, cells, strict=True):
            for (dr, dc), axis in (((0, 1), "right"), ((1, 0), "below")):
                after, before = big.get((r + dr, c + dc)), big.get((r - dr, c - dc))
                if after is not None:
                    pairs[axis].append((tile, after))
                if before is not None:
                    pairs[axis].append((before, tile))
        good = bad = 0
        for axis, found in pairs.items():
            if found:
                a, b = np.array(found).T
                dist = self._candidates.distance(a, b, axis)
                ratio = self._candidates.ratio(a, b, axis)
                good += int(((dist <= self._good) & (ratio >= GOOD_SEAM_RATIO)).sum())
                bad += int((ratio < BAD_SEAM_RATIO).sum())
        return bad <= good // 2

    def frame(self) -> pd.DataFrame:
        """``mosaic, row, col`` per tile: mosaics numbered by size (largest 0), rows and columns
        from 0 within each mosaic."""
        roots = sorted(self._members, key=lambda r: (-len(self._members[r]), min(self._members[r])))
        number = np.empty(len(self.root), dtype=np.int64)
        row, col = self.row.copy(), self.col.copy()
        for k, r in enumerate(roots):
            members = self._members[r]
            number[members] = k
            row[members] -= row[members].min()
            col[members] -= col[members].min()
        return pd.DataFrame({"mosaic": number, "row": row, "col": col})


def candidate_pairs(candidates: Candidates, max_distance: float) -> pd.DataFrame:
    """Distinct candidate pairs ``a, b, side, distance`` from both search directions that look
    like true seams: within ``max_distance`` and without a rival much nearer."""
    frames = []
    for axis in AXES:
        for indices, distances, outgoing in (
            (*candidates.forward[axis], True),
            (*candidates.backward[axis], False),
        ):
            rows, ranks = np.nonzero((indices >= 0) & (distances <= max_distance))
            other = indices[rows, ranks]
            a, b = (rows, other) if outgoing else (other, rows)
            frames.append(
                pd.DataFrame({"a": a, "b": b, "side": axis, "distance": distances[rows, ranks]})
            )
    pairs = pd.concat(frames, ignore_index=True).drop_duplicates(["a", "b", "side"])
    ratio = np.empty(len(pairs))
    for axis in AXES:
        rows = (pairs["side"] == axis).to_numpy()
        ratio[rows] = candidates.ratio(
            pairs["a"].to_numpy()[rows], pairs["b"].to_numpy()[rows], axis
        )
    return pairs[ratio >= GOOD_SEAM_RATIO].reset_index(drop=True)


def _supported_joins(
    layout: Layout, pairs: pd.DataFrame, min_support: int, failed: set[tuple[int, ...]]
) -> int:
    """One round of joins voted for by candidate pairs; returns how many joins were made.

    ``failed`` remembers refused joins (by groups and their sizes) so they are not retried until
    one of the two groups has grown.
    """
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    dr = np.where(pairs["side"].to_numpy() == "below", 1, 0)
    ra, rb = layout.root[a], layout.root[b]
    cross = ra != rb
    shift_r = layout.row[a] + dr - layout.row[b]
    shift_c = layout.col[a] + (1 - dr) - layout.col[b]
    flip = ra > rb
    votes = pd.DataFrame(
        {
            "lo": np.where(flip, rb, ra),
            "hi": np.where(flip, ra, rb),
            "sr": np.where(flip, -shift_r, shift_r),
            "sc": np.where(flip, -shift_c, shift_c),
            "distance": pairs["distance"].to_numpy(),
            "pair": np.arange(len(pairs)),
        }
    )[cross]
    hypotheses = votes.groupby(["lo", "hi", "sr", "sc"], sort=False).agg(
        support=("pair", "size"), distance=("distance", "mean"), pair=("pair", "first")
    )
    hypotheses = hypotheses[hypotheses["support"] >= min_support]
    hypotheses = hypotheses.sort_values(["support", "distance"], ascending=[False, True])
    touched: set[int] = set()
    joined = 0
    for (lo, hi, sr, sc), pair in zip(hypotheses.index, hypotheses["pair"], strict=True):
        key = (lo, hi, sr, sc, layout.size(lo), layout.size(hi))
        if lo in touched or hi in touched or key in failed:
            continue
        i = int(pair)
        side_dr = int(dr[i])
        if layout.join(int(a[i]), int(b[i]), side_dr, 1 - side_dr):
            touched.update((lo, hi))
            joined += 1
        else:
            failed.add(key)
    return joined


def _adjacent_pairs(mosaics: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """axis -> ``(a, b)``: every pair of tiles that sit side by side in one mosaic."""
    place = pd.DataFrame(
        {"tile": np.arange(len(mosaics)), **{c: mosaics[c].to_numpy() for c in MOSAIC_COLUMNS}}
    )
    pairs = {}
    for axis, (dr, dc) in OFFSETS.items():
        moved = place.assign(row=place["row"] - dr, col=place["col"] - dc)
        both = place.merge(moved, on=MOSAIC_COLUMNS, suffixes=("_a", "_b"))
        pairs[axis] = (both["tile_a"].to_numpy(), both["tile_b"].to_numpy())
    return pairs


def assemble(
    n_tiles: int,
    links: pd.DataFrame,
    candidates: Candidates | None = None,
    config: MosaicConfig | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Place tiles into mosaics.

    Args:
        n_tiles: Number of tiles (positions 0 .. n_tiles - 1).
        links: ``a, b, side, distance, ratio`` (e.g. from :func:`mutual_links`), taken in order
            of decreasing ratio.
        candidates: Nearest candidates, for the seam check of every join and for the support
            stage (both skipped when None).
        config: Solver settings.

    Returns:
        ``(mosaics, neighbours)``: ``mosaic, row, col`` per tile position, and every pair of
        tiles side by side in a mosaic as ``a, b, side, distance, ratio`` (see
        :meth:`Candidates.ratio`; both NaN at a degenerate edge or without candidates).
    """
    cfg = config or MosaicConfig()
    layout = Layout(n_tiles, candidates, cfg.support_distance)
    order = links.sort_values(["ratio", "distance"], ascending=[False, True])
    for a, b, side in zip(order["a"], order["b"], order["side"], strict=True):
        layout.join(int(a), int(b), *OFFSETS[side])
    if candidates is not None and cfg.min_support > 0:
        pairs = candidate_pairs(candidates, cfg.support_distance)
        failed: set[tuple[int, ...]] = set()
        while _supported_joins(layout, pairs, cfg.min_support, failed):
            pass
    mosaics = layout.frame()
    frames = []
    for axis, (a, b) in _adjacent_pairs(mosaics).items():
        frame = pd.DataFrame({"a": a, "b": b, "side": axis, "distance": np.nan, "ratio": np.nan})
        if candidates is not None:
            frame["distance"] = candidates.distance(a, b, axis)
            frame["ratio"] = candidates.ratio(a, b, axis)
        frames.append(frame)
    neighbours = pd.concat(frames, ignore_index=True)
    return mosaics, neighbours.sort_values(["a", "side"], ignore_index=True)
