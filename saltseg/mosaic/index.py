"""Nearest neighbours of descriptors: an approximate annoy index or an exact blocked search.

Both return the ``k`` nearest base vectors of each query by euclidean distance, with the query's
own row excluded when base and queries describe the same tiles (``exclude_self``).
"""

from __future__ import annotations

import numpy as np

from saltseg.errors import SaltsegError

METHODS = ("annoy", "exact")


def _annoy(
    base: np.ndarray, queries: np.ndarray, k: int, n_trees: int, search_k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from annoy import AnnoyIndex

    index = AnnoyIndex(base.shape[1], "euclidean")
    index.set_seed(seed)
    for i, vector in enumerate(base):
        index.add_item(i, vector)
    index.build(n_trees, n_jobs=1)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    dist = np.full((len(queries), k), np.inf, dtype=np.float32)
    for q, vector in enumerate(queries):
        ids, ds = index.get_nns_by_vector(vector, k, search_k=search_k, include_distances=True)
        found[q, : len(ids)] = ids
        dist[q, : len(ds)] = ds
    return found, dist


def _exact(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    base64 = base.astype(np.float64)
    base_sq = (base64**2).sum(axis=1)
    kk = min(k, len(base))
    found = np.full((len(queries), k), -1, dtype=np.int64)
    dist = np.full((len(queries), k), np.inf, dtype=np.float32)
    for start in range(0, len(queries), 2048):
        block = queries[start : start + 2048].astype(np.float64)
        d2 = base_sq[None, :] - 2 * block @ base64.T + (block**2).sum(axis=1)[:, None]
        part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
        order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1, kind="stable")
        part = np.take_along_axis(part, order, axis=1)
        found[start : start + len(block), :kk] = part
        best = np.take_along_axis(d2, part, axis=1)
        dist[start : start + len(block), :kk] = np.sqrt(np.maximum(best, 0))
    return found, dist


def nearest(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    method: str = "annoy",
    n_trees: int = 16,
    search_k: int = -1,
    exclude_self: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest base vectors of each query.

    Args:
        base: ``(M, D)`` vectors to search.
        queries: ``(Q, D)`` vectors to look up.
        k: Neighbours per query.
        method: ``"annoy"`` (approximate) or ``"exact"`` (blocked brute force).
        n_trees: Trees of the annoy index; more is slower to build and more accurate.
        search_k: Nodes annoy inspects per query; -1 for its default (``n_trees * k``).
        exclude_self: Optional ``(Q,)`` base row of each query's own tile (-1 for none), left
            out of its answer.
        seed: Seed of the annoy index.

    Returns:
        ``(indices, distances)``, each ``(Q, k)``, nearest first; -1 and inf where fewer than
        ``k`` base vectors are left.
    """
    if method not in METHODS:
        raise SaltsegError(f"unknown search method {method!r}; expected one of {list(METHODS)}")
    if k < 1:
        raise SaltsegError(f"k must be at least 1, got {k}")
    if len(base) == 0 or len(queries) == 0:
        shape = (len(queries), k)
        return np.full(shape, -1, dtype=np.int64), np.full(shape, np.inf, dtype=np.float32)
    extra = 0 if exclude_self is None else 1
    if method == "annoy":
        found, dist = _annoy(base, queries, k + extra, n_trees, search_k, seed)
    else:
        found, dist = _exact(base, queries, k + extra)
    if exclude_self is None:
        return found, dist
    own = (found == np.asarray(exclude_self)[:, None]) & (found >= 0)
    keep = np.argsort(own, axis=1, kind="stable")[:, :k]  # own hits move to the end
    return np.take_along_axis(found, keep, axis=1), np.take_along_axis(dist, keep, axis=1)
