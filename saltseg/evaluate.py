"""Score predicted masks against the truth with the competition metric (``saltseg evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from saltseg.data.tgs import load_masks
from saltseg.errors import SaltsegError
from saltseg.io import atomic_path, check_output_file
from saltseg.metrics import image_scores, iou


def evaluate(
    truth: str | Path,
    pred: str | Path,
    per_image: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The competition score of ``pred`` against ``truth``.

    Args:
        truth: A data folder (``train/masks``), a folder of mask PNGs, or a ``train.csv``.
        pred: A submission CSV (``id,rle_mask``) or a folder of mask PNGs, with exactly the
            truth's ids.
        per_image: Write ``id,iou,score`` per image to this CSV (must not exist unless
            ``overwrite``).
        overwrite: Replace an existing ``per_image`` file.

    Returns:
        ``{"score", "n", "mean_iou"}``.

    Raises:
        SaltsegError: unreadable inputs, or ids missing from either side.
    """
    if per_image is not None:
        per_image = check_output_file(per_image, overwrite)
    truth_ids, truth_masks = load_masks(truth)
    pred_ids, pred_masks = load_masks(pred)
    missing, extra = set(truth_ids) - set(pred_ids), set(pred_ids) - set(truth_ids)
    if missing:
        raise SaltsegError(
            f"{pred}: no prediction for {len(missing)} id(s) of the truth, "
            f"e.g. {sorted(missing)[0]!r}"
        )
    if extra:
        raise SaltsegError(
            f"{pred}: {len(extra)} id(s) not in the truth, e.g. {sorted(extra)[0]!r}"
        )
    order = {tile_id: i for i, tile_id in enumerate(pred_ids)}
    pred_masks = pred_masks[[order[i] for i in truth_ids]]
    scores = image_scores(truth_masks, pred_masks)
    ious = iou(truth_masks, pred_masks)
    if per_image is not None:
        per_image.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"id": truth_ids, "iou": ious, "score": scores})
        with atomic_path(per_image) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    return {"score": float(scores.mean()), "n": len(truth_ids), "mean_iou": float(ious.mean())}
