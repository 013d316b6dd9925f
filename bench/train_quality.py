"""Training quality at equal CPU budget on the real sample: our resnet34 recipe vs a plain smp loop.

Superseded by ``bench/real_quality.py`` (k-fold CV on all real tiles); kept until that one has
written its section of RESULTS.md.

Both train on the same 320 tiles of ../shared/tgs-sample and are scored on the same 80 with the
competition metric (threshold 0.5, no test-time augmentation). Each side runs in its own process
with one thread, at the same time, and stops when its own process CPU time reaches the budget, so
load on the machine affects both alike.

- ours: ``configs/resnet34.yaml`` (random init, scSE on both paths, hypercolumn, classifier,
  BCE + Dice then symmetric Lovasz, SGD one-cycle), through saltseg's LightningModule.
- peer: ``segmentation_models_pytorch.Unet("resnet34", encoder_weights=None)``, Adam at 1e-3, BCE
  + Dice, horizontal flips, tiles reflect-padded to 128, in a plain PyTorch loop.

Run from the repository root: ``python bench/train_quality.py [--minutes 15]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "tgs-sample"
N_VAL = 80


def _split(n: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n)[:N_VAL]


def _budget_callback(budget_s: float):
    import lightning as L

    class CpuBudget(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if time.process_time() > budget_s:
                trainer.should_stop = True

    return CpuBudget()


def _seconds_per_step(config, datamodule, steps: int = 4) -> float:
    """CPU seconds of one training step of the recipe (weights left unchanged: lr 0)."""
    import torch

    from saltseg.training.module import SaltModule

    module = SaltModule(config)
    optimizer = torch.optim.SGD(module.model.parameters(), lr=0.0)
    batches = iter(datamodule.train_dataloader())
    next(batches)
    start = time.process_time()
    for _ in range(steps):
        batch = next(batches)
        loss, _ = module.criterion(module.model(batch["image"]), batch["mask"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.process_time() - start) / steps


def run_ours(budget_s: float, epochs: int) -> dict:
    import lightning as L
    import torch

    from saltseg.config import load_config
    from saltseg.data.datamodule import FoldDataModule
    from saltseg.data.tgs import load_dataset
    from saltseg.metrics import competition_metric
    from saltseg.training.module import SaltModule
    from saltseg.tta import predict_probs

    torch.set_num_threads(1)
    tiles = load_dataset(SAMPLE, "train")
    base = load_config(ROOT / "configs" / "resnet34.yaml", ["model.pretrained=false"])
    datamodule = FoldDataModule(tiles, _split(len(tiles)), base.augment, batch_size=16, seed=0)
    # The one-cycle schedule must end inside the budget: fit the number of epochs to it.
    steps_per_epoch = len(datamodule.train_tiles) // 16
    per_step = _seconds_per_step(base, datamodule)
    epochs = max(
        2, min(epochs, int(0.97 * (budget_s - time.process_time()) / per_step) // steps_per_epoch)
    )
    overrides = [
        "model.pretrained=false",
        f"trainer.epochs={epochs}",
        "data.num_workers=0",
        f"loss.stages=[{{epoch: 0, terms: {{bce: 1, dice: 1}}}}, "
        f"{{epoch: {max(1, int(epochs * 0.6))}, terms: {{lovasz_symmetric: 1}}}}]",
    ]
    config = load_config(ROOT / "configs" / "resnet34.yaml", overrides)
    L.seed_everything(0, verbose=False)
    module = SaltModule(config)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[_budget_callback(budget_s)],
    )
    start_cpu = time.process_time()
    trainer.fit(module, datamodule=datamodule)
    train_cpu = time.process_time() - start_cpu
    seen = trainer.global_step * 16
    val = datamodule.val_tiles
    probs = predict_probs(module.model, config, val.images, val.depths)["mask"]
    probs_tta = predict_probs(module.model, config, val.images, val.depths, tta=("none", "hflip"))
    return {
        "score": competition_metric(val.masks, probs > 0.5),
        "score_tta": competition_metric(val.masks, probs_tta["mask"] > 0.5),
        "images_per_s": seen / train_cpu,
        "epochs": trainer.current_epoch,
    }


def run_peer(budget_s: float, epochs: int) -> dict:
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F

    from saltseg.data.tgs import load_dataset
    from saltseg.metrics import competition_metric

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiles = load_dataset(SAMPLE, "train")
    val_index = _split(len(tiles))
    train_index = np.setdiff1d(np.arange(len(tiles)), val_index)

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (13, 14, 13, 14), mode="reflect")

    model = smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dice = smp.losses.DiceLoss("binary")
    images = torch.from_numpy(tiles.images[:, None])
    masks = torch.from_numpy(tiles.masks[:, None].astype(np.float32))
    rng = np.random.default_rng(0)
    start_cpu, seen, epoch = time.process_time(), 0, 0
    while epoch < epochs and time.process_time() < budget_s:
        model.train()
        for batch in np.array_split(rng.permutation(train_index), len(train_index) // 16):
            x, y = images[batch], masks[batch]
            flip = torch.from_numpy(rng.random(len(batch)) < 0.5)
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            logits = model(pad(x))[..., 13:-14, 13:-14]
            loss = F.binary_cross_entropy_with_logits(logits, y) + dice(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(batch)
            if time.process_time() > budget_s:
                break
        epoch += 1
    train_cpu = time.process_time() - start_cpu
    model.eval()
    with torch.inference_mode():
        probs = torch.sigmoid(model(pad(images[val_index]))[..., 13:-14, 13:-14])
    return {
        "score": competition_metric(tiles.masks[val_index], probs[:, 0].numpy() > 0.5),
        "images_per_s": seen / train_cpu,
        "epochs": epoch,
    }


def _row(name: str, r: dict) -> str:
    tta = f"{r['score_tta']:.4f}" if "score_tta" in r else "-"
    return f"| {name} | {r['score']:.4f} | {tta} | {r['images_per_s']:.1f} | {r['epochs']} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="CPU budget per side")
    parser.add_argument("--epochs", type=int, default=200, help="most epochs of either side")
    parser.add_argument("--side", choices=["ours", "peer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = args.minutes * 60
    if args.side:
        result = (run_ours if args.side == "ours" else run_peer)(budget, args.epochs)
        print(json.dumps(result))
        return
    if not (SAMPLE / "train" / "images").is_dir():
        sys.exit(f"the real sample is needed at {SAMPLE}")
    base = [sys.executable, __file__, "--minutes", str(args.minutes), "--epochs", str(args.epochs)]
    procs = {
        side: subprocess.Popen([*base, "--side", side], stdout=subprocess.PIPE, text=True)
        for side in ("ours", "peer")
    }
    results = {}
    for side, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"{side} failed with exit code {proc.returncode}")
        results[side] = json.loads(out.strip().splitlines()[-1])
    ours, peer = results["ours"], results["peer"]
    body = f"""## Training quality at equal CPU budget (`bench/train_quality.py`)

Real sample, 320 training / {N_VAL} validation tiles, {args.minutes:g} CPU-minutes per side
(one thread each, both running at once), random init, competition metric at threshold 0.5.
Machine: {machine()}.

| model | val metric | val metric, flip TTA | train images/s (CPU) | epochs done |
| --- | --- | --- | --- | --- |
{_row("saltseg resnet34 recipe", ours)}
{_row("smp Unet(resnet34), plain loop", peer)}

Difference (ours - peer, no TTA): **{ours["score"] - peer["score"]:+.4f}** (target: +0.03).
"""
    write_section("train_quality", body)
    print(body)


if __name__ == "__main__":
    main()
