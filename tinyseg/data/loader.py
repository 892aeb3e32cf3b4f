"""DataLoader: batches of samples, shuffled by seed, augmented reproducibly.

Iterating a loader yields batch dicts of numpy arrays:

- "image": float32 (N, 3, H, W) and "mask": int64 (N, H, W), stacked;
- "boxes", "labels", "instance_masks": lists of N arrays (their lengths differ per image);
- "id": list of N strings.

Every image of a batch must have the same size (give variable-size data a
``Resize(size)`` or a ``RandomScaleCrop(size=...)``). The order of epoch ``e`` is the
permutation drawn by ``numpy.random.default_rng(seed + e)``; ``set_epoch(e)`` selects the
epoch (the training loop calls it once per epoch). The loader's transform gets a Generator
seeded from ``(seed, epoch, index)``, so augmentations change every epoch, do not depend on how
samples are batched, and repeat exactly in a rerun.
"""

from __future__ import annotations

import math

import numpy as np

from ..validate import check_int

_STACKED = {"image": np.float32, "mask": np.int64}
_LISTED = ("boxes", "labels", "instance_masks", "id")


def collate(samples) -> dict:
    """Merge a list of sample dicts into one batch dict (see the module docstring)."""
    samples = list(samples)
    if not samples:
        raise ValueError("samples must hold at least one sample dict, got an empty list")
    batch = {}
    for key, dtype in _STACKED.items():
        if key not in samples[0]:
            continue
        arrays = [np.asarray(s[key]) for s in samples]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            ids = [s.get("id", i) for i, s in enumerate(samples)]
            found = ", ".join(f"{name}: {a.shape}" for name, a in zip(ids, arrays))
            raise ValueError(
                f"cannot batch {key!r} arrays of different shapes ({found}); "
                "resize them to one size first, e.g. with Resize(size) or RandomScaleCrop(size=...)"
            )
        batch[key] = np.stack(arrays).astype(dtype, copy=False)
    for key in samples[0]:
        if key not in batch:
            batch[key] = [s.get(key) for s in samples]
    for key in _LISTED:
        batch.setdefault(key, [s.get(key) for s in samples])
    return batch


class DataLoader:
    """Iterate a dataset in batches.

    :param dataset: anything with ``len()`` and ``dataset[i]`` returning a sample dict.
    :param batch_size: samples per batch (>= 1).
    :param shuffle: draw a new order each epoch from ``default_rng(seed + epoch)``.
    :param seed: non-negative int for the order and the transform's Generators.
    :param drop_last: leave out the last batch when it is smaller than ``batch_size``.
    :param transform: optional ``t(sample, rng) -> sample`` applied to each sample.

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(
        self, dataset, batch_size=8, shuffle=False, seed=0, drop_last=False, transform=None
    ):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset must support len() and indexing, got {type(dataset)}")
        self.dataset = dataset
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.shuffle = bool(shuffle)
        self.seed = check_int(seed, "seed", 0)
        self.drop_last = bool(drop_last)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable t(sample, rng) or None, got {transform!r}")
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentations the next iteration uses."""
        self.epoch = check_int(epoch, "epoch", 0)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def indices(self) -> np.ndarray:
        """The sample order of the current epoch."""
        n = len(self.dataset)
        if self.shuffle:
            return np.random.default_rng(self.seed + self.epoch).permutation(n)
        return np.arange(n)

    def _sample(self, i: int) -> dict:
        sample = self.dataset[i]
        if self.transform is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            sample = self.transform(sample, rng)
        return sample

    def __iter__(self):
        order = self.indices()
        for b in range(len(self)):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield collate([self._sample(int(i)) for i in chunk])

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})"
        )
