"""Jigsaw solver: neighbouring tiles from extrapolated edges, assembled into mosaics.

Typical use::

    from saltseg.mosaic import run_mosaic, mosaic_groups
    run_mosaic("data/tgs", "out/mosaic")          # neighbors.csv, mosaics.csv, mosaic_*.png
    groups = mosaic_groups("out/mosaic/mosaics.csv")
"""

from saltseg.mosaic.config import MosaicConfig
from saltseg.mosaic.descriptors import edge_descriptors, edge_std
from saltseg.mosaic.evaluate import evaluate_links, evaluate_mosaics, true_links
from saltseg.mosaic.index import nearest
from saltseg.mosaic.io import (
    Tiles,
    load_predictions,
    load_tiles,
    mosaic_groups,
    read_mosaics,
    read_neighbors,
    read_truth,
)
from saltseg.mosaic.links import Candidates, find_candidates, mutual_links
from saltseg.mosaic.pipeline import MosaicResult, run_mosaic, solve
from saltseg.mosaic.postprocess import continue_salt_down, uncertainty
from saltseg.mosaic.render import render_mosaic
from saltseg.mosaic.solver import Layout, assemble

__all__ = [
    "Candidates",
    "Layout",
    "MosaicConfig",
    "MosaicResult",
    "Tiles",
    "assemble",
    "continue_salt_down",
    "edge_descriptors",
    "edge_std",
    "evaluate_links",
    "evaluate_mosaics",
    "find_candidates",
    "load_predictions",
    "load_tiles",
    "mosaic_groups",
    "mutual_links",
    "nearest",
    "read_mosaics",
    "read_neighbors",
    "read_truth",
    "render_mosaic",
    "run_mosaic",
    "solve",
    "true_links",
    "uncertainty",
]
