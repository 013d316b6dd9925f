import numpy as np
import pytest

from saltseg.errors import SaltsegError
from saltseg.rle import rle_decode, rle_encode


def test_encode_is_column_major_and_one_based():
    mask = np.zeros((3, 3), dtype=bool)
    mask[0, 0] = mask[1, 0] = True  # first column, rows 0-1: pixels 1 and 2
    mask[2, 2] = True  # last pixel: 9
    assert rle_encode(mask) == "1 2 9 1"


def test_empty_and_full():
    assert rle_encode(np.zeros((101, 101), bool)) == ""
    assert rle_encode(np.ones((101, 101), bool)) == "1 10201"
    assert not rle_decode("").any()
    assert not rle_decode(float("nan")).any()
    assert rle_decode("1 10201").all()


@pytest.mark.parametrize("seed", range(5))
def test_round_trip(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((101, 101)) > rng.random()
    assert np.array_equal(rle_decode(rle_encode(mask)), mask)


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 3", "odd number"),
        ("1 a", "not an integer"),
        ("1.5 2", "not an integer"),
        ("0 3", "below 1"),
        ("5 0", "below 1"),
        ("10200 5", "beyond"),
        ("10 5 1 2", "not sorted"),
        ("1 5 4 2", "overlap"),
    ],
)
def test_malformed(rle, message):
    with pytest.raises(SaltsegError, match=message):
        rle_decode(rle)
