"""The small base every dataset shares: indexing, the seeded transform, iteration and the repr.

A dataset here is a random-access list of sample dicts (see :mod:`tinyseg.data`). The parts
that differ from one dataset to the next are how many samples there are and how sample ``i`` is
made; the rest is the same everywhere, so it lives once in :class:`SampleDataset`:

- ``dataset[i]`` checks ``i`` (an int in ``[-n, n)``; negative counts from the end), builds the
  sample with :meth:`~SampleDataset.load`, then applies the optional transform;
- the transform is called as ``transform(sample, rng)`` with a Generator that depends only on
  the index (:meth:`~SampleDataset.transform_rng`), so ``dataset[i]`` gives the same sample every
  time. Fresh augmentations every epoch come from giving the transform to the DataLoader instead;
- ``iter(dataset)`` yields ``dataset[0], dataset[1], ...``;
- ``repr(dataset)`` is ``Name(key=value, ...)`` with the fields the subclass lists.

A subclass sets ``self.transform = check_transform(transform)`` in its constructor and defines
``__len__``, ``load(i)`` and ``_repr_fields()``; it may override ``transform_rng(i)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SampleDataset", "check_index", "check_transform", "index_rng"]

#: keeps the index-seeded transform streams apart from other seeded streams
TRANSFORM_TAG = 0x5EC


def check_transform(transform):
    """``transform`` itself if it is callable or None; TypeError otherwise."""
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable t(sample, rng) or None, got {transform!r}")
    return transform


def check_index(i, n: int) -> int:
    """``i`` as an index in ``[0, n)``; negative ``i`` counts from the end.

    :raises TypeError: when ``i`` is not an int (bools are refused too).
    :raises IndexError: when ``i`` is outside ``[-n, n)``.
    """
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"index must be an int, got {i!r}")
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for {n} images")
    return int(i) % n


def index_rng(i: int) -> np.random.Generator:
    """A Generator that depends on the index ``i`` alone (the folder readers' transform stream)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence((TRANSFORM_TAG, i))))


class SampleDataset:
    """Base class for datasets of sample dicts (see the module docstring for the contract)."""

    transform = None

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, i: int) -> dict:
        """The untransformed sample ``i``, for an index already checked to lie in ``[0, n)``."""
        raise NotImplementedError

    def transform_rng(self, i: int) -> np.random.Generator:
        """The Generator handed to the transform for sample ``i``; the same for the same ``i``."""
        return index_rng(i)

    def _repr_fields(self) -> dict:
        """Name -> value of what ``repr`` shows, in order."""
        return {}

    def __getitem__(self, i) -> dict:
        i = check_index(i, len(self))
        sample = self.load(i)
        if self.transform is not None:
            sample = self.transform(sample, self.transform_rng(i))
        return sample

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"
