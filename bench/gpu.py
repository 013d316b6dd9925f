"""Training speed and memory of the resnet34 recipe on a CUDA GPU in bf16 (see bench/gpu.sh).

Trains fold 0 of a 5-fold split of ../shared/tgs-sample (or synthetic tiles when the sample is
absent) for a few epochs and reports training images/s (after the first epoch, which includes
cuDNN autotuning) and the peak GPU memory, then writes them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "tgs-sample"


def main() -> None:
    import lightning as L
    import numpy as np
    import torch

    from saltseg.config import load_config
    from saltseg.data.datamodule import FoldDataModule
    from saltseg.data.folds import make_folds
    from saltseg.data.tgs import load_dataset
    from saltseg.training.module import SaltModule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU found")

    with tempfile.TemporaryDirectory() as tmp:
        data = SAMPLE
        if not (SAMPLE / "train" / "images").is_dir():
            from saltseg.data.synthetic import generate_dataset

            data = Path(tmp) / "synth"
            generate_dataset(data, n_train=2000, n_test=10)
        tiles = load_dataset(data, "train", cache=False)
        config = load_config(
            ROOT / "configs" / "resnet34.yaml",
            ["model.pretrained=false", f"trainer.epochs={args.epochs}", "data.num_workers=4"],
        )
        folds = make_folds(tiles.ids, tiles.masks, k=5)
        datamodule = FoldDataModule(
            tiles,
            np.flatnonzero(folds["fold"].to_numpy() == 0),
            config.augment,
            batch_size=args.batch_size,
            num_workers=4,
        )

        class Timer(L.Callback):
            def __init__(self) -> None:
                self.images, self.seconds, self.start = 0, 0.0, 0.0

            def on_train_epoch_start(self, trainer, module) -> None:
                torch.cuda.synchronize()
                self.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, module) -> None:
                torch.cuda.synchronize()
                if trainer.current_epoch > 0:  # the first epoch pays for autotuning
                    self.seconds += time.perf_counter() - self.start
                    self.images += len(datamodule.train_tiles) // args.batch_size * args.batch_size

        timer = Timer()
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
        trainer = L.Trainer(
            max_epochs=args.epochs,
            accelerator="gpu",
            devices=1,
            precision="bf16-mixed",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            callbacks=[timer],
            default_root_dir=tmp,
        )
        trainer.fit(SaltModule(config), datamodule=datamodule)
        peak = torch.cuda.max_memory_allocated() / 2**30
        speed = timer.images / max(timer.seconds, 1e-9)
        val = trainer.callback_metrics.get("val_metric")

    body = f"""## GPU training (`bench/gpu.sh`)

resnet34 recipe (scSE, hypercolumn, classifier; random init), bf16-mixed, batch {args.batch_size},
{len(datamodule.train_tiles)} training tiles padded to {config.augment.size}, {args.epochs} epochs
on {torch.cuda.get_device_name()} (torch {torch.__version__}).

| training images/s (epochs 2..{args.epochs}) | peak GPU memory | last val metric |
| --- | --- | --- |
| {speed:.0f} | {peak:.2f} GiB | {float(val) if val is not None else float("nan"):.4f} |
"""
    write_section("gpu", body)
    print(body)


if __name__ == "__main__":
    main()
