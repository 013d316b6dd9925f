import numpy as np
import pandas as pd
import pytest

from saltseg.data.folds import coverage_class, make_folds, read_folds, write_folds
from saltseg.errors import SaltsegError


def _masks(n=200, seed=0):
    rng = np.random.default_rng(seed)
    coverage = rng.random(n)
    coverage[: n // 3] = 0
    masks = rng.random((n, 20, 20)) < coverage[:, None, None]
    return [f"t{i:04d}" for i in range(n)], masks


def test_coverage_class():
    masks = np.zeros((3, 10, 10), bool)
    masks[1].flat[:1] = True  # 1 %
    masks[2] = True
    assert coverage_class(masks).tolist() == [0, 1, 10]


def test_folds_are_balanced_stratified_and_deterministic():
    ids, masks = _masks()
    depths = np.linspace(0, 1000, len(ids))
    a = make_folds(ids, masks, k=5, seed=3, depths=depths)
    b = make_folds(ids, masks, k=5, seed=3, depths=depths)
    c = make_folds(ids, masks, k=5, seed=4, depths=depths)
    assert a.equals(b) and not a.equals(c)
    sizes = a["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    for _, group in a.groupby("coverage_class"):
        counts = group["fold"].value_counts().reindex(range(5), fill_value=0)
        assert counts.max() - counts.min() <= 2  # strata split by depth add at most one each


def test_group_folds_keep_groups_together():
    ids, masks = _masks(120)
    groups = {tile_id: f"m{i // 7}" for i, tile_id in enumerate(ids)}
    frame = make_folds(ids, masks, k=4, groups=groups)
    frame["group"] = frame["id"].map(groups)
    assert (frame.groupby("group")["fold"].nunique() == 1).all()
    sizes = frame["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 7


def test_write_read_and_errors(tmp_path):
    ids, masks = _masks(30)
    frame = make_folds(ids, masks, k=3)
    write_folds(frame, tmp_path / "folds.csv")
    back = read_folds(tmp_path / "folds.csv", ids=ids, k=3)
    assert back["fold"].tolist() == frame["fold"].tolist()
    with pytest.raises(SaltsegError, match="have no fold"):
        read_folds(tmp_path / "folds.csv", ids=[*ids, "extra"])
    with pytest.raises(SaltsegError, match="not in the data"):
        read_folds(tmp_path / "folds.csv", ids=ids[1:])
    with pytest.raises(SaltsegError, match="out of range"):
        read_folds(tmp_path / "folds.csv", k=2)
    pd.DataFrame({"id": ["a", "a"], "fold": [0, 1]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(SaltsegError, match="duplicate"):
        read_folds(tmp_path / "dup.csv")
    with pytest.raises(SaltsegError, match="at least 2"):
        make_folds(ids, masks, k=1)
