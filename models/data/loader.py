"""Data loading whose order and augmentation are pure functions of (seed, iteration, rank), so that a resumed
run sees exactly the batches an uninterrupted one would, with any number of workers.

- :class:`IterationBatchSampler` — for each epoch a permutation seeded by (seed, epoch), cut into global batches
  of ``batch_per_rank × world_size`` samples (the incomplete tail dropped), each rank taking its slice: the
  sharding of ``DistributedSampler``, but addressable by iteration, so it can start at any iteration.
- :class:`AugmentedDataset` — ``dataset[(epoch, index)]`` runs the augmentation with torch's generator seeded by
  (seed, epoch, index), inside ``fork_rng`` so the caller's random state is untouched.
"""
from __future__ import annotations

import random
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors

from ..sgr.components import connected_components
from .synthetic import mix_seed


class AugmentedDataset(Dataset):
    """Wraps a dataset of ``{"image", "label", "name"}`` items; ``self[(epoch, index)]`` returns the augmented
    ``(image float32 (3, h, w), label int64 (h, w))``, plus the connected-component ids of the augmented label
    (int32 (h, w), SGR's supervision, computed here in the worker) when ``components`` gives a connectivity."""

    def __init__(self, dataset: Dataset, transform, seed: int, components: Optional[dict] = None):
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.components = components  # {"connectivity", "ignore_index"} or None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, 0xA06, epoch, index))
            image, label = self.transform(tv_tensors.Image(item["image"]), tv_tensors.Mask(item["label"]))
        image, label = image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor).long()
        if self.components is None:
            return image, label
        ids, _ = connected_components(label.numpy(), **self.components)
        return image, label, torch.from_numpy(ids)


class IterationBatchSampler(Sampler):
    """Per-rank batches of ``(epoch, index)`` keys for the micro-steps ``start_step .. total_steps - 1``.

    Step ``s`` is batch ``s mod B`` of epoch ``s div B``, B = ``len(dataset) // (batch_per_rank * world_size)``.
    """

    def __init__(self, num_samples: int, batch_per_rank: int, *, total_steps: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        global_batch = batch_per_rank * world_size
        if num_samples < global_batch:
            raise ValueError(f"the training set has {num_samples} samples, fewer than one global batch of "
                             f"{global_batch} ({batch_per_rank} per rank x {world_size} ranks)")
        self.num_samples, self.batch_per_rank = num_samples, batch_per_rank
        self.total_steps, self.start_step = total_steps, start_step
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.batches_per_epoch = num_samples // global_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        g = torch.Generator().manual_seed(mix_seed(self.seed, 0x5A3, epoch))
        return torch.randperm(self.num_samples, generator=g)

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, b = divmod(step, self.batches_per_epoch)
        perm = self._perm_cache(epoch)
        start = b * self.batch_per_rank * self.world_size + self.rank * self.batch_per_rank
        return [(epoch, int(i)) for i in perm[start:start + self.batch_per_rank]]

    def _perm_cache(self, epoch: int) -> torch.Tensor:
        if getattr(self, "_cached_epoch", None) != epoch:
            self._cached_epoch, self._cached_perm = epoch, self.permutation(epoch)
        return self._cached_perm

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0)


def worker_init_fn(worker_id: int) -> None:
    """Seed python, numpy and torch in each worker from (torch's per-worker base seed) — the augmentation itself
    is reseeded per sample, this only covers code outside it."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def collate_train(batch):
    """Stack each field: (images, labels) or (images, labels, components)."""
    return tuple(torch.stack(field) for field in zip(*batch))


def build_train_loader(dataset: AugmentedDataset, *, batch_per_rank: int, total_steps: int, start_step: int,
                       rank: int, world_size: int, seed: int, num_workers: int, pin_memory: bool) -> DataLoader:
    sampler = IterationBatchSampler(len(dataset), batch_per_rank, total_steps=total_steps, start_step=start_step,
                                    rank=rank, world_size=world_size, seed=seed)
    g = torch.Generator().manual_seed(mix_seed(seed, 0x3D1, rank, start_step))  # workers' base seeds
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=collate_train, worker_init_fn=worker_init_fn if num_workers else None,
                      persistent_workers=False, generator=g, prefetch_factor=2 if num_workers else None)


class ShardSampler(Sampler):
    """Indices ``rank, rank + world, ...``: every sample on exactly one rank (no padding, unlike
    ``DistributedSampler``, whose duplicates would be counted twice in a confusion matrix)."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _collate_one(batch):
    return batch[0]


def build_eval_loader(dataset: Dataset, *, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                      pin_memory: bool = False, seed: Optional[int] = 0) -> DataLoader:
    """One raw item (uint8 image, label at the original size, name) per step, sharded over the ranks."""
    return DataLoader(dataset, batch_size=1, sampler=ShardSampler(len(dataset), rank, world_size),
                      num_workers=num_workers, pin_memory=pin_memory, collate_fn=_collate_one,
                      worker_init_fn=worker_init_fn if num_workers else None)
