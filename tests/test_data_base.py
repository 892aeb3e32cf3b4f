"""The shared dataset base: index checks, the seeded transform, iteration and the repr."""

import numpy as np
import pytest

from tinyseg.data import ShapesDataset
from tinyseg.data.base import SampleDataset, check_index, check_transform, index_rng


class Squares(SampleDataset):
    """A tiny dataset: sample i is an i-by-i block of ones."""

    def __init__(self, n=3, transform=None):
        self.n = n
        self.transform = check_transform(transform)

    def __len__(self):
        return self.n

    def load(self, i):
        return {"image": np.ones((i, i)), "id": f"sq-{i}"}

    def _repr_fields(self):
        return {"n": self.n, "name": "squares"}


def test_getitem_checks_the_index_and_counts_from_the_end():
    ds = Squares(3)
    assert ds[-1]["id"] == "sq-2"
    assert ds[np.int64(1)]["id"] == "sq-1"
    with pytest.raises(IndexError, match="index 3 out of range for 3 images"):
        ds[3]
    with pytest.raises(TypeError, match="index must be an int"):
        ds[True]
    with pytest.raises(TypeError, match="index must be an int"):
        ds[1.0]


def test_iter_yields_every_sample_in_order():
    assert [s["id"] for s in Squares(3)] == ["sq-0", "sq-1", "sq-2"]


def test_transform_gets_a_generator_seeded_by_the_index():
    def jitter(sample, rng):
        return {**sample, "noise": rng.random()}

    ds = Squares(3, transform=jitter)
    assert ds[1]["noise"] == ds[1]["noise"] == ds[-2]["noise"]
    assert ds[0]["noise"] != ds[1]["noise"]
    assert ds[2]["noise"] == index_rng(2).random()


def test_bad_transform_is_a_type_error():
    with pytest.raises(TypeError, match="transform must be callable"):
        Squares(transform="flip")
    assert check_transform(None) is None


def test_repr_lists_the_fields():
    assert repr(Squares(2)) == "Squares(n=2, name='squares')"


def test_check_index_returns_a_python_int():
    i = check_index(np.int32(-1), 4)
    assert i == 3 and type(i) is int


def test_the_datasets_use_the_base():
    ds = ShapesDataset("val", num_images=2, size=32)
    assert isinstance(ds, SampleDataset)
    expected = "ShapesDataset(split='val', num_images=2, size=(32, 32), seed=0, max_objects=4)"
    assert repr(ds) == expected
