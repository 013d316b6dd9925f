"""Tiles as tensors: the dataset, the input channels and the Lightning data module of one fold."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import albumentations as A
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from saltseg.config import AugmentConfig, Config
from saltseg.data.channels import make_input
from saltseg.data.folds import coverage_class
from saltseg.data.tgs import TileSet, concat_tiles
from saltseg.data.transforms import (
    apply,
    build_eval_transform,
    build_train_transform,
    seed_worker,
)


class TileDataset(Dataset):
    """Tiles through an albumentations transform, as ``{"image", "mask", "index"}`` tensors."""

    def __init__(
        self, tiles: TileSet, transform: A.Compose, extra_channels: Sequence[str] = ()
    ) -> None:
        self.tiles = tiles
        self.transform = transform
        self.extra_channels = tuple(extra_channels)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = None if self.tiles.masks is None else self.tiles.masks[index]
        image, mask = apply(self.transform, self.tiles.images[index], mask)
        sample = {
            "image": torch.from_numpy(
                make_input(image, float(self.tiles.depths[index]), self.extra_channels)
            ),
            "index": torch.tensor(index),
        }
        if mask is not None:
            sample["mask"] = torch.from_numpy(np.asarray(mask, dtype=np.float32)[None])
        return sample


def balance_weights(masks: np.ndarray, balance: float, empty: bool = True) -> np.ndarray:
    """Drawing weight of each tile: its coverage class's tile count to the power ``-balance``.

    Classes as :func:`saltseg.data.folds.coverage_class` makes them (empty, then tenths of
    coverage). The weights sum to 1; with ``balance=1`` every class present is drawn equally
    often, with 0 every tile is. With ``empty=False`` the empty tiles keep their share of the
    draws and only the salt classes are evened out among themselves.
    """
    classes = coverage_class(np.asarray(masks, dtype=bool))
    counts = np.bincount(classes, minlength=11).astype(np.float64)
    weights = counts[classes] ** -float(balance)
    salt = classes > 0
    if not empty and salt.any() and (~salt).any():
        weights[~salt] = 1.0 / len(weights)
        weights[salt] *= salt.mean() / weights[salt].sum()
    return weights / weights.sum()


class CoverageSampler(Sampler[int]):
    """Draws ``len(weights)`` tiles an epoch by ``weights``, with replacement.

    From epoch ``until`` on (when given) it shuffles every tile once instead, so that the last
    epochs see the tiles' own mix. The epoch comes from ``set_epoch`` (Lightning calls it at
    the start of every epoch) and otherwise counts the passes; each epoch's draws depend only on
    ``seed`` and the epoch, so a resumed run draws what an uninterrupted one would have.
    """

    def __init__(self, weights: np.ndarray, until: int | None = None, seed: int = 0) -> None:
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.until = until
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.weights)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def balanced(self) -> bool:
        """Whether the current epoch's draws are weighted (else a plain shuffle)."""
        return self.until is None or self.epoch < self.until

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.weights)
        if self.balanced():
            order = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        self.epoch += 1
        yield from order.tolist()


class FoldDataModule(L.LightningDataModule):
    """Training and validation loaders of one fold.

    Args:
        tiles: All labelled tiles.
        val_index: Positions in ``tiles`` of the validation fold (the rest trains).
        augment: Augmentation and input geometry.
        batch_size: Batch size per device.
        val_batch_size: Validation batch size per device; ``None`` for ``4 * batch_size``.
        num_workers: Loader worker processes.
        extra_channels: Extra input channels (see :func:`make_input`).
        seed: Seed of the augmentation pipeline.
        extra_train: Tiles that only ever train (pseudo-labels), added to the training tiles.
        balance: Coverage-class balance of the training draws (see :func:`balance_weights`);
            0 shuffles the training tiles.
        balance_empty: Whether the empty tiles take part in that balance (or keep their share).
        balance_until: Epoch from which training goes back to a plain shuffle (see
            :class:`CoverageSampler`); ``None`` balances every epoch.
    """

    def __init__(
        self,
        tiles: TileSet,
        val_index: np.ndarray,
        augment: AugmentConfig,
        batch_size: int = 16,
        num_workers: int = 0,
        val_batch_size: int | None = None,
        extra_channels: Sequence[str] = (),
        seed: int | None = None,
        extra_train: TileSet | None = None,
        balance: float = 0.0,
        balance_empty: bool = True,
        balance_until: int | None = None,
    ) -> None:
        super().__init__()
        val_index = np.asarray(val_index, dtype=np.int64)
        train_index = np.setdiff1d(np.arange(len(tiles)), val_index)
        self.train_tiles = tiles.subset(train_index)
        if extra_train is not None and len(extra_train):
            self.train_tiles = concat_tiles([self.train_tiles, extra_train])
        self.val_tiles = tiles.subset(val_index)
        self.augment = augment
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or 4 * batch_size
        self.num_workers = num_workers
        self.extra_channels = tuple(extra_channels)
        self.seed = seed
        self.balance = float(balance)
        self.balance_empty = balance_empty
        self.balance_until = balance_until

    @classmethod
    def from_config(
        cls,
        tiles: TileSet,
        val_index: np.ndarray,
        config: Config,
        seed: int | None = None,
        extra_train: TileSet | None = None,
    ) -> FoldDataModule:
        """The data module of a recipe's ``data`` and ``augment`` sections."""
        return cls(
            tiles,
            val_index,
            config.augment,
            batch_size=config.data.batch_size,
            num_workers=config.data.num_workers,
            val_batch_size=config.data.val_batch_size,
            extra_channels=config.data.extra_channels,
            seed=seed,
            extra_train=extra_train,
            balance=config.data.balance,
            balance_empty=config.data.balance_empty,
            balance_until=config.data.balance_until,
        )

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        batch_size = self.batch_size if shuffle else self.val_batch_size
        sampler = None
        if shuffle and self.balance > 0 and self.train_tiles.masks is not None:
            weights = balance_weights(self.train_tiles.masks, self.balance, self.balance_empty)
            sampler = CoverageSampler(weights, self.balance_until, seed=self.seed or 0)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle and len(dataset) > batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        transform = build_train_transform(self.augment, seed=self.seed)
        return self._loader(TileDataset(self.train_tiles, transform, self.extra_channels), True)

    def val_dataloader(self) -> DataLoader:
        transform = build_eval_transform(self.augment)
        return self._loader(TileDataset(self.val_tiles, transform, self.extra_channels), False)
