"""Settings of the jigsaw solver, with defaults chosen on synthetic sections with known layout."""

from __future__ import annotations

from dataclasses import dataclass

from saltseg.errors import SaltsegError
from saltseg.mosaic.index import METHODS


@dataclass(frozen=True)
class MosaicConfig:
    """How neighbours are searched, tested and assembled.

    Attributes:
        method: ``"annoy"`` (approximate index) or ``"exact"`` (brute force, for checks).
        n_trees: Trees of each annoy index.
        search_k: Nodes annoy inspects per query (-1: its default, ``n_trees * k``).
        candidates: Nearest neighbours kept per edge, for the ratio test and for support.
        min_ratio: A link needs ``1 - d1 / d2 >= min_ratio`` from both of its tiles (``d1``,
            ``d2``: distances to the best and second-best candidates).
        max_distance: A link needs ``d1 <= max_distance`` (descriptors have unit norm, so
            distances lie in [0, 2]).
        min_edge_std: Edges whose pixel standard deviation is below this (images in [0, 1]) are
            degenerate and never link.
        max_flatness: Edges with more than this share of pixels at one grey level (mostly blank)
            are degenerate too.
        min_support: Candidate pairs (not links on their own) that must agree on the same offset
            between two mosaics before those mosaics are joined; 0 turns this stage off.
        support_distance: Largest distance of a candidate pair counted as support, and of a seam
            counted for a join. Every join is checked on all the seams it creates: it is refused
            when the seams that look wrong (a rival candidate 1.5 times nearer) outnumber half of
            those that look right (within ``support_distance`` and no rival much nearer).
        seed: Seed of the annoy indexes.
    """

    method: str = "annoy"
    n_trees: int = 16
    search_k: int = 1000
    candidates: int = 4
    min_ratio: float = 0.2
    max_distance: float = 0.8
    min_edge_std: float = 0.01
    max_flatness: float = 0.5
    min_support: int = 2
    support_distance: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SaltsegError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        if self.n_trees < 1:
            raise SaltsegError(f"n_trees must be at least 1, got {self.n_trees}")
        if self.candidates < 2:
            raise SaltsegError(f"candidates must be at least 2, got {self.candidates}")
        if not 0 <= self.min_ratio < 1:
            raise SaltsegError(f"min_ratio must be in [0, 1), got {self.min_ratio}")
        if self.max_distance <= 0 or self.support_distance <= 0:
            raise SaltsegError("max_distance and support_distance must be positive")
        if self.min_edge_std < 0 or self.min_support < 0:
            raise SaltsegError("min_edge_std and min_support must not be negative")
