"""Losses checked on tiny hand-computed tensors, brute-force references and gradcheck."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from saltseg.errors import SaltsegError
from saltseg.losses import (
    CombinedLoss,
    LossSchedule,
    SegmentationCriterion,
    bce_loss,
    bootstrapped_ce,
    check_loss_spec,
    classifier_bce,
    create_loss,
    empty_topk_loss,
    focal_loss,
    list_losses,
    loss_from_config,
    lovasz_hinge,
    soft_dice_loss,
)

torch.set_num_threads(1)


def t(values: list, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    x = torch.tensor(values, dtype=torch.float64)
    return x.reshape(shape) if shape else x


def sp(x: float) -> float:
    """softplus, i.e. BCE of logit -x against 1."""
    return math.log1p(math.exp(x))


# --- reference Lovasz: the Lovasz extension by its Choquet-integral definition ---------------


def jaccard_loss_of_errors(mistakes: set[int], truth: set[int]) -> float:
    """Jaccard loss of a prediction that gets exactly ``mistakes`` wrong: |M| / |G u M|."""
    union = truth | mistakes
    return len(mistakes) / len(union) if union else 0.0


def lovasz_reference(logits: list[float], labels: list[int]) -> float:
    """Integral over thresholds s > 0 of Delta_J({i : relu(err_i) >= s}), summed level by level."""
    m = [max(0.0, 1 - x * (2 * y - 1)) for x, y in zip(logits, labels, strict=True)]
    truth = {i for i, y in enumerate(labels) if y}
    levels = sorted({v for v in m if v > 0})
    total, previous = 0.0, 0.0
    for level in levels:
        above = {i for i, v in enumerate(m) if v >= level}
        total += (level - previous) * jaccard_loss_of_errors(above, truth)
        previous = level
    return total


def test_lovasz_matches_definition_on_tiny_images() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(3, 1, 2, 3, generator=gen, dtype=torch.float64) * 2
        target = (torch.rand(3, 1, 2, 3, generator=gen) > 0.6).double()
        target[0] = 0  # one empty image in every batch
        rows = [
            (logits[i].flatten().tolist(), target[i].flatten().int().tolist()) for i in range(3)
        ]
        per_image = sum(lovasz_reference(x, y) for x, y in rows) / 3
        batch = lovasz_reference(logits.flatten().tolist(), target.flatten().int().tolist())
        flipped = sum(lovasz_reference([-v for v in x], [1 - v for v in y]) for x, y in rows) / 3
        assert lovasz_hinge(logits, target).item() == pytest.approx(per_image, abs=1e-12)
        assert lovasz_hinge(logits, target, per_image=False).item() == pytest.approx(
            batch, abs=1e-12
        )
        sym = lovasz_hinge(logits, target, symmetric=True).item()
        assert sym == pytest.approx((per_image + flipped) / 2, abs=1e-12)


def test_lovasz_closed_form_two_pixels() -> None:
    y = t([1, 0], (1, 1, 1, 2))
    # errors 1 - x * sign: (0.5, 1.5); D({1}) = 1/2, D({0, 1}) = 1 -> 1.5 * 0.5 + 0.5 * 0.5
    assert lovasz_hinge(t([0.5, 0.5], (1, 1, 1, 2)), y).item() == pytest.approx(1.0)
    # ties: errors (1, 1) -> D({0, 1}) = 1, whatever the sort order
    assert lovasz_hinge(t([0.0, 0.0], (1, 1, 1, 2)), y).item() == pytest.approx(1.0)
    # correct with margin: zero loss
    assert lovasz_hinge(t([2.0, -1.0], (1, 1, 1, 2)), y).item() == 0.0


def test_lovasz_empty_truth_is_hinge_on_worst_pixel() -> None:
    x = t([0.3, -2.0, 1.0], (1, 1, 1, 3)).requires_grad_()
    y = torch.zeros_like(x)
    loss = lovasz_hinge(x, y)
    loss.backward()
    assert loss.item() == pytest.approx(2.0)  # relu(1 + max x)
    assert x.grad.flatten().tolist() == [0.0, 0.0, 1.0]
    # symmetric: second term has an all-salt truth, errors 1 + x = (1.3, -1, 2) -> (2 + 1.3) / 3
    x.grad = None
    loss = lovasz_hinge(x, y, symmetric=True)
    loss.backward()
    assert loss.item() == pytest.approx((2.0 + 3.3 / 3) / 2)
    assert torch.allclose(x.grad.flatten(), t([1 / 6, 0.0, 0.5 + 1 / 6]))


def test_lovasz_empty_truth_and_prediction_is_zero() -> None:
    x = torch.full((2, 1, 4, 4), -5.0, dtype=torch.float64, requires_grad=True)
    loss = lovasz_hinge(x, torch.zeros_like(x), symmetric=True)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


def test_dice_hand_values_per_image_and_batch() -> None:
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)  # p = 0.5 everywhere
    y = torch.zeros_like(x)
    y[0] = 1
    # image 0: (2*2 + 1) / (2 + 4 + 1) = 5/7; image 1: 1 / (2 + 0 + 1) = 1/3
    assert soft_dice_loss(x, y).item() == pytest.approx(((1 - 5 / 7) + (1 - 1 / 3)) / 2)
    # batch: (2*2 + 1) / (4 + 4 + 1)
    assert soft_dice_loss(x, y, per_image=False).item() == pytest.approx(1 - 5 / 9)
    assert soft_dice_loss(x, y, smooth=0.5).item() == pytest.approx(
        ((1 - 4.5 / 6.5) + (1 - 0.5 / 2.5)) / 2
    )


def test_dice_empty_truth() -> None:
    x = torch.full((1, 1, 3, 3), -20.0, dtype=torch.float64, requires_grad=True)
    loss = soft_dice_loss(x, torch.zeros_like(x))
    loss.backward()
    assert loss.item() < 1e-6 and torch.isfinite(x.grad).all()
    x2 = torch.zeros((1, 1, 3, 3), dtype=torch.float64, requires_grad=True)
    soft_dice_loss(x2, torch.zeros_like(x2)).backward()
    assert (x2.grad > 0).all()  # descent lowers every logit toward background
    with pytest.raises(SaltsegError, match="smooth"):
        soft_dice_loss(x, x, smooth=0)


def test_bce_and_focal_hand_values() -> None:
    x, y = t([0.0, 2.0, -1.0], (1, 1, 1, 3)), t([1.0, 0.0, 0.0], (1, 1, 1, 3))
    bce = (math.log(2) + sp(2.0) + sp(-1.0)) / 3
    assert bce_loss(x, y).item() == pytest.approx(bce)
    assert bce_loss(x, y, pos_weight=3.0).item() == pytest.approx(bce + 2 * math.log(2) / 3)
    assert focal_loss(x, y, alpha=None, gamma=0.0).item() == pytest.approx(bce)
    p = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))]
    expected = (
        0.25 * 0.5**2 * math.log(2) + 0.75 * p[1] ** 2 * sp(2.0) + 0.75 * p[2] ** 2 * sp(-1.0)
    ) / 3
    assert focal_loss(x, y).item() == pytest.approx(expected)


def test_bootstrapped_ce_hand_values_per_image_and_batch() -> None:
    x = t([0.0, 3.0, -3.0, 1.0, 4.0, -4.0, 4.0, -4.0], (2, 1, 1, 4))
    y = t([1, 1, 0, 0, 1, 0, 1, 0], (2, 1, 1, 4))
    # image 0 pixel losses: log2, sp(-3), sp(-3), sp(1); image 1: all sp(-4)
    img0 = sorted([math.log(2), sp(-3), sp(-3), sp(1)], reverse=True)
    assert bootstrapped_ce(x, y, k=0.5).item() == pytest.approx((sum(img0[:2]) / 2 + sp(-4)) / 2)
    assert bootstrapped_ce(x, y, k=0.25, per_image=False).item() == pytest.approx(
        (sp(1) + math.log(2)) / 2
    )
    assert bootstrapped_ce(x, y, k=1.0).item() == pytest.approx(bce_loss(x, y).item())
    with pytest.raises(SaltsegError, match="k must be"):
        bootstrapped_ce(x, y, k=0)


def test_classifier_bce() -> None:
    masks = torch.zeros(2, 1, 3, 3)
    masks[0, 0, 1, 1] = 1
    cls = torch.tensor([[2.0], [-1.0]])
    assert classifier_bce(cls, masks).item() == pytest.approx((sp(-2) + sp(-1)) / 2, rel=1e-6)
    with pytest.raises(SaltsegError, match="cls logits"):
        classifier_bce(torch.zeros(3, 1), masks)


def test_empty_topk_hand_values_and_only_on_empty_tiles() -> None:
    x = torch.full((3, 1, 2, 2), -4.0)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = 2.0, 0.0  # a blob on an empty tile: top 2 = 2, 0
    x[1, 0, 0, 0] = 6.0  # an empty tile with a sharper blob: top 2 = 6, -4
    y = torch.zeros_like(x)
    y[2, 0, 0, 0] = 1  # the salt tile is left to the other losses
    x.requires_grad_(True)
    loss = empty_topk_loss(x, y, k=2)
    assert loss.item() == pytest.approx((sp(1.0) + sp(1.0)) / 3, rel=1e-6)
    loss.backward()
    assert not x.grad[2].any()
    assert (x.grad[0, 0, 0, 0] > 0) and x.grad[0, 0, 0, 1] == 0  # only the top pixels move
    assert empty_topk_loss(x, y, k=100).item() == pytest.approx(
        (sp(x[0].mean().item()) + sp(x[1].mean().item())) / 3, rel=1e-6
    )
    assert empty_topk_loss(x[2:], y[2:]).item() == 0
    for bad in (0, 1.5, True):
        with pytest.raises(SaltsegError, match="empty_topk k"):
            create_loss("empty_topk", k=bad)


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (soft_dice_loss, {"per_image": True}),
        (soft_dice_loss, {"per_image": False}),
        (lovasz_hinge, {"per_image": True}),
        (lovasz_hinge, {"per_image": False, "symmetric": True}),
        (bootstrapped_ce, {"k": 0.3}),
        (focal_loss, {"alpha": 0.25, "gamma": 2.0}),
        (bce_loss, {}),
        (empty_topk_loss, {"k": 2}),
    ],
)
def test_gradcheck(fn, kwargs) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(2, 1, 3, 3, generator=gen) > 0.5).double()
    y[1] = 0
    assert torch.autograd.gradcheck(lambda v: fn(v, y, **kwargs), (x,))


@pytest.mark.parametrize("name", list_losses())
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_registry_losses_finite_on_uniform_masks(name: str, fill: float) -> None:
    x = torch.randn(3, 1, 5, 5, requires_grad=True)
    loss = create_loss(name)(x, torch.full_like(x, fill))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    if name == "empty_topk" and fill == 1:  # acts on empty tiles only
        assert loss.item() == 0 and not x.grad.any()
    else:
        assert (x.grad.sum() > 0) if fill == 0 else (x.grad.sum() < 0)  # descent toward the truth


def test_registry_errors_and_options() -> None:
    assert list_losses() == sorted(
        ["bce", "dice", "lovasz", "lovasz_symmetric", "bootstrapped_ce", "focal", "empty_topk"]
    )
    assert create_loss("Dice", per_image=False).options == {"per_image": False, "smooth": 1.0}
    assert create_loss("lovasz_symmetric").options["symmetric"] is True
    with pytest.raises(SaltsegError, match="valid: bce, bootstrapped_ce, dice"):
        create_loss("jaccard")
    with pytest.raises(SaltsegError, match="'dice'"):
        create_loss("dice", nope=1)
    with pytest.raises(SaltsegError, match="shape|logits"):
        bce_loss(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 4))


def test_combined_loss() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 4, 4, generator=gen)
    y = (torch.rand(2, 1, 4, 4, generator=gen) > 0.5).float()
    combo = CombinedLoss({"bce": 1.0, "dice": 0.5})
    assert combo(x, y).item() == pytest.approx(
        bce_loss(x, y).item() + 0.5 * soft_dice_loss(x, y).item(), rel=1e-6
    )
    cfg = CombinedLoss([{"name": "lovasz", "symmetric": True, "weight": 2.0}, {"name": "bce"}])
    parts = cfg.parts(x, y)
    assert set(parts) == {"lovasz", "bce"}
    assert parts["lovasz"].item() == pytest.approx(lovasz_hinge(x, y, symmetric=True).item())
    assert cfg(x, y).item() == pytest.approx(2 * parts["lovasz"].item() + parts["bce"].item())
    with pytest.raises(SaltsegError, match="needs a 'name'"):
        CombinedLoss([{"weight": 1.0}])
    weights = loss_from_config({"bce": 1.0, "dice": 0.5})
    assert isinstance(weights, CombinedLoss) and weights(x, y).item() == pytest.approx(
        combo(x, y).item()
    )
    assert loss_from_config({"name": "focal", "gamma": 0.0}).options["gamma"] == 0.0


def test_loss_schedule() -> None:
    sched = LossSchedule([(0, "bce"), (20, {"name": "lovasz", "per_image": True})])
    assert [type(sched.at(e)).__name__ for e in (0, 19, 20, 100)] == [
        "BCELoss",
        "BCELoss",
        "LovaszHingeLoss",
        "LovaszHingeLoss",
    ]
    for stages in ([], [(5, "bce")], [(0, "bce"), (0, "dice")]):
        with pytest.raises(SaltsegError, match="increase from 0"):
            LossSchedule(stages)


def _outputs(n: int = 3, aux_size: int = 4) -> tuple[dict, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    masks = torch.zeros(n, 1, 8, 8)
    masks[0, :, 2:5, 2:6] = 1
    masks[2, :, :, :3] = 1
    out = {
        "mask": torch.randn(n, 1, 8, 8, generator=gen, requires_grad=True),
        "cls": torch.randn(n, 1, generator=gen, requires_grad=True),
        "aux": [torch.randn(n, 1, aux_size, aux_size, generator=gen, requires_grad=True)],
    }
    return out, masks


def test_criterion_combines_parts() -> None:
    out, masks = _outputs()
    crit = SegmentationCriterion("dice", cls_weight=0.5, aux_weight=0.25)
    total, parts = crit(out, masks)
    aux_up = F.interpolate(out["aux"][0], size=(8, 8), mode="bilinear", align_corners=False)
    expected = (
        soft_dice_loss(out["mask"], masks)
        + 0.5 * classifier_bce(out["cls"], masks)
        + 0.25 * soft_dice_loss(aux_up, masks)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"mask", "cls", "aux", "total"} and not parts["total"].requires_grad
    total.backward()
    assert all(torch.isfinite(v.grad).all() for v in (out["mask"], out["cls"], out["aux"][0]))
    _, parts = SegmentationCriterion("bce", cls_weight=0)({"mask": out["mask"]}, masks)
    assert set(parts) == {"mask", "total"}
    with pytest.raises(SaltsegError, match="no 'mask'"):
        crit({"cls": out["cls"]}, masks)


def test_criterion_nonempty_only_and_schedule() -> None:
    out, masks = _outputs()
    crit = SegmentationCriterion(LossSchedule([(0, "bce"), (2, "lovasz")]), nonempty_only=True)
    keep = torch.tensor([True, False, True])
    _, parts = crit(out, masks, epoch=0)
    assert parts["mask"].item() == pytest.approx(bce_loss(out["mask"][keep], masks[keep]).item())
    _, parts = crit(out, masks, epoch=5)
    expected = lovasz_hinge(out["mask"][keep], masks[keep])
    assert parts["mask"].item() == pytest.approx(expected.item())
    empty = torch.zeros_like(masks)
    total, parts = crit(out, empty, epoch=5)
    total.backward()
    assert parts["mask"].item() == 0.0 and parts["aux"].item() == 0.0 and parts["cls"] > 0
    assert (out["mask"].grad == 0).all() and (out["cls"].grad != 0).all()


def test_inputs_without_channel_axis() -> None:
    x = torch.randn(2, 4, 4)
    y = (torch.rand(2, 4, 4) > 0.5).float()
    for fn in (bce_loss, soft_dice_loss, lovasz_hinge, bootstrapped_ce, focal_loss):
        assert fn(x, y).item() == pytest.approx(fn(x[:, None], y[:, None]).item())


def test_lovasz_every_two_pixel_labeling() -> None:
    for labels in itertools.product([0, 1], repeat=2):
        y = t(list(labels), (1, 1, 1, 2))
        x = t([0.7, -0.3], (1, 1, 1, 2))
        got = lovasz_hinge(x, y).item()
        assert got == pytest.approx(lovasz_reference([0.7, -0.3], list(labels)))


def test_half_precision_logits_are_computed_in_float32() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 64, 64, generator=gen)
    y = (torch.rand(2, 1, 64, 64, generator=gen) > 0.5).float()
    for name in list_losses():
        loss = create_loss(name)
        half = loss(x.bfloat16(), y)
        assert half.dtype == torch.float32
        assert half.item() == pytest.approx(loss(x.bfloat16().float(), y).item(), rel=1e-6)


def test_check_loss_spec_for_config_validation() -> None:
    check_loss_spec("bce")
    check_loss_spec({"bce": 1.0, "lovasz_symmetric": 0.5})
    check_loss_spec([{"name": "dice", "weight": 1.0, "per_image": False}, {"name": "focal"}])
    with pytest.raises(SaltsegError, match="unknown loss 'jaccard'; valid: bce, "):
        check_loss_spec({"bce": 1.0, "jaccard": 1.0})
    with pytest.raises(SaltsegError, match="'focal': bad options"):
        check_loss_spec([{"name": "focal", "gama": 2.0}])
    with pytest.raises(SaltsegError, match="smooth must be > 0"):
        check_loss_spec({"name": "dice", "smooth": 0})  # caught when built, not when first used
    with pytest.raises(SaltsegError, match="k must be"):
        create_loss("bootstrapped_ce", k=2)
    with pytest.raises(SaltsegError, match="bad loss spec 5"):
        check_loss_spec(5)


def test_losses_package_layout() -> None:
    import saltseg
    from saltseg.losses import criterion, functional, modules

    assert functional.lovasz_hinge is lovasz_hinge
    assert modules.create_loss is create_loss and modules.list_losses is saltseg.list_losses
    assert criterion.SegmentationCriterion is SegmentationCriterion
    assert saltseg.create_loss is create_loss


def test_criterion_window_scores_only_the_tile() -> None:
    out, masks = _outputs()  # 8x8 grid; the "tile" is its central 4x4 (offset 2)
    crit = SegmentationCriterion("dice", cls_weight=0.5, aux_weight=0.25, window=(2, 4))
    total, parts = crit(out, masks)
    aux_up = F.interpolate(out["aux"][0], size=(8, 8), mode="bilinear", align_corners=False)
    inner = (..., slice(2, 6), slice(2, 6))
    expected = (
        soft_dice_loss(out["mask"][inner], masks[inner])
        + 0.5 * classifier_bce(out["cls"], masks)  # the classifier sees the whole target
        + 0.25 * soft_dice_loss(aux_up[inner], masks[inner])
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    border = out["mask"].grad.clone()
    border[inner] = 0
    assert (border == 0).all() and (out["mask"].grad[inner] != 0).any()
    with pytest.raises(SaltsegError, match="does not fit"):
        SegmentationCriterion("bce", window=(6, 4))(out, masks)
    with pytest.raises(SaltsegError, match="offset"):
        SegmentationCriterion("bce", window=(-1, 4))
