"""Jigsaw solver on 22000 real-sized synthetic tiles, side by side with the 4th-place method.

Three runs on the same tiles (saltseg.data.synthetic, 4000 train + 18000 test, with the true
layout in mosaic_truth.csv), each in a fresh process limited to 2 cores, timed, with its peak
resident memory:

- saltseg end to end (``run_mosaic``: read tiles, annoy candidates, ratio test, assembly, CSVs,
  PNGs of mosaics of at least 8 tiles);
- saltseg with an exact brute-force search on the same descriptors instead of annoy (the links
  should agree);
- the peer, the jigsaw step of the 4th-place solution: extrapolated edges z-scored per position
  over all tiles and then per vector, exact 2-NN both ways, mutual links with distance < 10 and
  ratio 1 - d1/d2 > 0.2 in both directions.

Then both methods on the 400 real tiles of the sample beside the checkout (no truth there: the
number of links found). Figures go to bench/RESULTS.md.

Run from the repository root: ``python bench/mosaic.py [--tiles 22000] [--data DIR]``. The
synthetic set is generated once into ``$SALTSEG_CACHE_DIR`` (else ``~/.cache/saltseg``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine, write_section  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "tgs-sample"
CORES = 2


def _limit_cores() -> None:
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[:CORES])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _z(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return centred / np.where(std > 0, std, 1.0)


def peer_links(images: np.ndarray) -> pd.DataFrame:
    """The 4th-place jigsaw step: mutual 2-NN of z-scored extrapolated edges, both ways."""
    from saltseg.mosaic import nearest

    frames = []
    everyone = np.arange(len(images))
    for side, (edge_a, next_a, edge_b, next_b) in {
        "right": (images[:, :, -1], images[:, :, -2], images[:, :, 0], images[:, :, 1]),
        "below": (images[:, -1, :], images[:, -2, :], images[:, 0, :], images[:, 1, :]),
    }.items():
        beyond_a, beyond_b = 2 * edge_a - next_a, 2 * edge_b - next_b
        stack = np.concatenate([beyond_a, edge_b, beyond_b, edge_a])
        mean, std = stack.mean(axis=0), stack.std(axis=0) + 1e-9
        forward = [_z((v - mean) / std).astype(np.float32) for v in (edge_b, beyond_a)]
        backward = [_z((v - mean) / std).astype(np.float32) for v in (edge_a, beyond_b)]
        idx_f, dist_f = nearest(*forward, 2, method="exact", exclude_self=everyone)
        idx_b, dist_b = nearest(*backward, 2, method="exact", exclude_self=everyone)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_f = np.nan_to_num(1 - dist_f[:, 0] / dist_f[:, 1])
            ratio_b = np.nan_to_num(1 - dist_b[:, 0] / dist_b[:, 1])
        b = idx_f[:, 0]
        keep = (
            (idx_b[b, 0] == everyone)
            & (dist_f[:, 0] < 10)
            & (dist_b[b, 0] < 10)
            & (ratio_f > 0.2)
            & (ratio_b[b] > 0.2)
        )
        frames.append(pd.DataFrame({"a": everyone[keep], "b": b[keep], "side": side}))
    return pd.concat(frames, ignore_index=True)


def _task_end_to_end(data: str, out: str) -> dict:
    from saltseg.mosaic import run_mosaic

    summary = run_mosaic(data, out)
    links = pd.read_csv(Path(out) / "neighbors.csv", dtype={"a": str, "b": str})
    mosaics = pd.read_csv(Path(out) / "mosaics.csv", dtype={"id": str})
    return {"summary": summary, "links": links, "mosaics": mosaics}


def _task_solve(data: str, method: str, **settings) -> dict:
    from saltseg.mosaic import MosaicConfig, assemble, find_candidates, load_tiles, mutual_links

    tiles = load_tiles(data)
    config = MosaicConfig(method=method, **settings)
    start = time.perf_counter()
    candidates = find_candidates(tiles.images, config)
    search = time.perf_counter() - start
    stage = mutual_links(candidates, config)
    _, links = assemble(len(tiles.ids), stage, candidates, config)
    names = np.asarray(tiles.ids, dtype=object)
    return {
        "search": search,
        "stage": stage.assign(a=names[stage["a"]], b=names[stage["b"]]),
        "links": links.assign(a=names[links["a"]], b=names[links["b"]]),
    }


def _task_peer(data: str) -> dict:
    from saltseg.mosaic import load_tiles

    tiles = load_tiles(data)
    start = time.perf_counter()
    links = peer_links(tiles.images)
    names = np.asarray(tiles.ids, dtype=object)
    links = links.assign(a=names[links["a"]], b=names[links["b"]])
    return {"links": links, "search": time.perf_counter() - start}


def _task_decode(data: str, cache: bool) -> dict:
    from saltseg.data.tgs import load_dataset

    return {"tiles": sum(len(load_dataset(data, s, cache=cache)) for s in ("train", "test"))}


def _child(task, args, kwargs, queue) -> None:
    _limit_cores()
    start = time.perf_counter()
    result = task(*args, **kwargs)
    result["seconds"] = time.perf_counter() - start
    result["peak_mb"] = _peak_mb()
    queue.put(result)


def measured(task, *args, **kwargs) -> dict:
    """Run ``task(*args, **kwargs)`` in a fresh process; its result, ``seconds``, ``peak_mb``."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(task, args, kwargs, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _keys(links: pd.DataFrame) -> set:
    return set(zip(links["a"], links["b"], links["side"], strict=True))


def _dataset(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    cache = Path(os.environ.get("SALTSEG_CACHE_DIR", Path.home() / ".cache" / "saltseg"))
    root = cache / f"bench-mosaic-{args.tiles}"
    if not (root / "mosaic_truth.csv").exists():
        from saltseg.data.synthetic import generate_dataset

        n_train = args.tiles * 2 // 11
        print(f"generating {args.tiles} synthetic tiles into {root} ...", flush=True)
        generate_dataset(root, n_train, args.tiles - n_train, seed=0, overwrite=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=22000)
    parser.add_argument("--data", help="Kaggle-layout folder with mosaic_truth.csv")
    args = parser.parse_args()
    from saltseg.mosaic import evaluate_links, evaluate_mosaics, read_truth

    data = _dataset(args)
    load_before = os.getloadavg()[0]
    truth = read_truth(data / "mosaic_truth.csv")
    n_tiles = len(truth)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        measured(_task_decode, str(data), True)  # fills the tile cache
        decode = measured(_task_decode, str(data), False)
        ours = measured(_task_end_to_end, str(data), str(Path(tmp) / "out"))
    annoy = measured(_task_solve, str(data), "annoy")
    exact = measured(_task_solve, str(data), "exact")
    tight = measured(_task_solve, str(data), "annoy", n_trees=32, search_k=2000)
    peer = measured(_task_peer, str(data))

    def row(name: str, links: pd.DataFrame, seconds: float, peak: float) -> str:
        s = evaluate_links(truth, links)
        return (
            f"| {name} | {s['links']} | {s['correct']} | {s['precision']:.4f} | "
            f"{s['recall']:.4f} | {seconds:.1f} | {f'{peak:.0f}' if peak else '-'} |"
        )

    rows.append(row("saltseg, end to end (annoy)", ours["links"], ours["seconds"], ours["peak_mb"]))
    rows.append(row("saltseg, ratio-test links only", annoy["stage"], annoy["search"], 0))
    rows.append(row("saltseg, exact search", exact["links"], exact["seconds"], exact["peak_mb"]))
    rows.append(row("peer (4th place)", peer["links"], peer["seconds"], peer["peak_mb"]))

    def agree(run: dict, key: str) -> float:
        mine, reference = _keys(run[key]), _keys(exact[key])
        return len(mine & reference) / max(1, len(mine | reference))

    mosaic_scores = evaluate_mosaics(truth, ours["mosaics"])
    notes.append(
        f"- Reading the {decode['tiles']} PNGs without the tile cache: {decode['seconds']:.1f} s; "
        f"end to end above reads them from the cache of `load_dataset`."
    )
    notes.append(
        f"- Candidate search (4 searches of {n_tiles} edges): annoy {annoy['search']:.1f} s, "
        f"exact {exact['search']:.1f} s. Links, annoy vs exact (Jaccard): ratio-test links "
        f"{agree(annoy, 'stage'):.4f}, final links {agree(annoy, 'links'):.4f}; with 32 trees "
        f"and search_k 2000 instead of 16 and 1000: {tight['search']:.1f} s, "
        f"{agree(tight, 'stage'):.4f} and {agree(tight, 'links'):.4f}."
    )
    notes.append(
        f"- Mosaics: {mosaic_scores['mosaics']} (largest {mosaic_scores['largest']} tiles); "
        f"{mosaic_scores['pair_accuracy']:.4f} of {mosaic_scores['pairs']} tile pairs sharing a "
        f"mosaic have the right offset; {ours['summary']['drawn']} PNGs drawn."
    )
    if (SAMPLE / "train" / "images").is_dir():
        real_ours = measured(_task_solve, str(SAMPLE), "annoy")
        real_peer = measured(_task_peer, str(SAMPLE))
        both = _keys(real_ours["links"]) & _keys(real_peer["links"])
        notes.append(
            f"- Real sample ({SAMPLE.name}, 400 train tiles, no truth): saltseg finds "
            f"{len(real_ours['links'])} links ({len(real_ours['stage'])} from the ratio test), "
            f"the peer {len(real_peer['links'])}; {len(both)} in common."
        )
    notes.append(
        f"- Shared machine: 1-minute load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (timings grow with it)."
    )
    body = "\n".join(
        [
            "## Jigsaw solver (`python bench/mosaic.py`)",
            "",
            f"{n_tiles} synthetic tiles (`saltseg.data.synthetic`, true layout known), "
            f"{CORES} cores; {machine()}.",
            "",
            "| method | links | correct | precision | recall | seconds | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *notes,
            "",
            "Time and memory of a row are those of a fresh process doing that run, reading",
            "the tiles from the cache included (the ratio-test row: the candidate search",
            "only). The peer's nearest neighbours use the same blocked exact search as",
            "saltseg's exact mode.",
        ]
    )
    print(body)
    write_section("mosaic", body)


if __name__ == "__main__":
    main()
