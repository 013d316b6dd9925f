import numpy as np
import pytest

from saltseg.metrics import competition_metric, image_scores, iou


def _square(n, size=10):
    mask = np.zeros((size, size), dtype=bool)
    mask.flat[:n] = True
    return mask


def test_empty_cases():
    empty, salt = np.zeros((5, 5), bool), np.ones((5, 5), bool)
    assert image_scores(empty, empty).tolist() == [1.0]
    assert image_scores(empty, salt).tolist() == [0.0]
    assert image_scores(salt, empty).tolist() == [0.0]
    assert iou(empty, empty).tolist() == [1.0]


def test_iou_exactly_at_threshold_is_not_a_hit():
    truth = _square(20)
    pred = _square(10)  # IoU = 10 / 20 = 0.5 exactly: no threshold passes (IoU > t)
    assert iou(truth, pred)[0] == 0.5
    assert image_scores(truth, pred)[0] == 0.0
    pred = _square(15)  # IoU = 0.75: passes 0.50..0.70 (5 of 10); 0.75 is not > 0.75
    assert image_scores(truth, pred)[0] == pytest.approx(0.5)
    pred = _square(19)  # IoU = 0.95: passes all but 0.95
    assert image_scores(truth, pred)[0] == pytest.approx(0.9)


def test_batch_matches_per_image_loop():
    rng = np.random.default_rng(0)
    truth = rng.random((50, 101, 101)) > rng.random((50, 1, 1))
    truth[:10] = False
    pred = truth ^ (rng.random(truth.shape) > 0.97)
    pred[5:10] = False
    expected = []
    for t, p in zip(truth, pred, strict=True):
        if not t.any():
            expected.append(float(not p.any()))
            continue
        value = (t & p).sum() / (t | p).sum()
        expected.append(np.mean([value > th for th in np.arange(0.5, 1.0, 0.05).round(2)]))
    assert np.allclose(image_scores(truth, pred), expected)
    assert competition_metric(truth, pred) == pytest.approx(np.mean(expected))


def test_accepts_channel_axis_and_rejects_mismatch():
    truth = np.ones((2, 1, 4, 4), bool)
    assert competition_metric(truth, truth) == 1.0
    with pytest.raises(ValueError, match="differ"):
        competition_metric(np.ones((2, 4, 4)), np.ones((3, 4, 4)))
