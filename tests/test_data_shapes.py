"""ShapesDataset: determinism, the sample dict's shapes and dtypes, and mask consistency."""

from __future__ import annotations

import numpy as np
import pytest

from tinyseg.data import ShapesDataset, masks_to_boxes, open_dataset


def check_sample(sample, h, w, max_objects=4):
    """Every key's shape and dtype, and that mask, instance masks, boxes and labels agree."""
    image, mask = sample["image"], sample["mask"]
    inst, boxes, labels = sample["instance_masks"], sample["boxes"], sample["labels"]
    assert image.shape == (3, h, w) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert mask.shape == (h, w) and mask.dtype == np.int64
    m = len(labels)
    assert 1 <= m <= max_objects
    assert inst.shape == (m, h, w) and inst.dtype == np.bool_
    assert boxes.shape == (m, 4) and boxes.dtype == np.float32
    assert labels.shape == (m,) and labels.dtype == np.int64
    assert isinstance(sample["id"], str)
    assert set(labels.tolist()) <= {1, 2, 3}
    # the semantic mask is the instance masks painted in order
    painted = np.zeros((h, w), dtype=np.int64)
    for im, lab in zip(inst, labels):
        painted[im] = lab
    np.testing.assert_array_equal(mask, painted)
    # visible instance masks do not overlap, and none is empty
    assert inst.sum(axis=0).max() <= 1
    assert inst.any(axis=(1, 2)).all()
    # boxes are tight: x2 = max_x + 1
    for im, box in zip(inst, boxes):
        ys, xs = np.nonzero(im)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


@pytest.mark.parametrize("size, hw", [(64, (64, 64)), (128, (128, 128)), ((96, 128), (96, 128))])
def test_sample_keys_shapes_and_consistency(size, hw):
    ds = ShapesDataset("train", num_images=12, size=size, seed=3)
    assert len(ds) == 12
    assert ds.classes == ("background", "square", "circle", "triangle")
    for i in range(len(ds)):
        check_sample(ds[i], *hw)


def test_object_counts_cover_one_to_max():
    ds = ShapesDataset("train", num_images=80, seed=1)
    counts = {len(ds[i]["labels"]) for i in range(len(ds))}
    assert counts == {1, 2, 3, 4}
    ds2 = ShapesDataset("val", num_images=20, max_objects=2)
    assert {len(ds2[i]["labels"]) for i in range(20)} <= {1, 2}


def test_all_classes_appear_and_objects_are_visible_enough():
    ds = ShapesDataset("train", num_images=40, seed=0)
    labels = np.concatenate([ds[i]["labels"] for i in range(40)])
    assert set(labels.tolist()) == {1, 2, 3}
    # even the smallest visible part of a kept object is a real region, not a sliver
    sizes = [int(m.sum()) for i in range(40) for m in ds[i]["instance_masks"]]
    assert min(sizes) >= 10


def test_colour_contrast_with_surroundings():
    """An object's mean colour differs clearly from the pixels just outside it."""
    ds = ShapesDataset("train", num_images=20, seed=5)
    diffs = []
    for i in range(20):
        s = ds[i]
        for m in s["instance_masks"]:
            inside = s["image"][:, m].mean(axis=1)
            ring = np.zeros_like(m)
            ring[1:, :] |= m[:-1, :]
            ring[:-1, :] |= m[1:, :]
            ring[:, 1:] |= m[:, :-1]
            ring[:, :-1] |= m[:, 1:]
            ring &= ~m
            if ring.any():
                diffs.append(np.abs(s["image"][:, ring].mean(axis=1) - inside).max())
    assert np.median(diffs) > 0.15


def test_deterministic_by_seed_split_and_index():
    a = ShapesDataset("train", num_images=5, seed=7)
    b = ShapesDataset("train", num_images=50, seed=7)  # length does not change sample i
    for i in range(5):
        sa, sb = a[i], b[i]
        for key in ("image", "mask", "instance_masks", "boxes", "labels"):
            np.testing.assert_array_equal(sa[key], sb[key])
        assert sa["id"] == sb["id"] == f"shapes-train-{i:06d}"
    # random access: order of access does not matter
    np.testing.assert_array_equal(a[3]["image"], b[3]["image"])
    np.testing.assert_array_equal(a[-1]["image"], a[4]["image"])


def test_split_and_seed_change_the_images():
    train = ShapesDataset("train", num_images=5, seed=0)
    val = ShapesDataset("val", num_images=5, seed=0)
    other = ShapesDataset("train", num_images=5, seed=1)
    for i in range(5):
        assert not np.array_equal(train[i]["image"], val[i]["image"])
        assert not np.array_equal(train[i]["image"], other[i]["image"])
    assert val[0]["id"] == "shapes-val-000000"
    assert len(ShapesDataset("train")) == 2000 and len(ShapesDataset("val")) == 200


def test_dataset_transform_is_applied_deterministically():
    def jitter(sample, rng):
        out = dict(sample)
        out["image"] = sample["image"] + np.float32(rng.random())
        return out

    a = ShapesDataset("train", num_images=3, transform=jitter)
    plain = ShapesDataset("train", num_images=3)
    np.testing.assert_array_equal(a[0]["image"], a[0]["image"])
    d0 = a[0]["image"] - plain[0]["image"]
    d1 = a[1]["image"] - plain[1]["image"]
    assert np.ptp(d0) < 1e-5 and d0.mean() > 0
    assert abs(d0.mean() - d1.mean()) > 1e-6  # each index gets its own Generator


def test_masks_to_boxes():
    m = np.zeros((3, 6, 8), dtype=bool)
    m[0, 1:3, 2:5] = True
    m[1, 5, 7] = True
    boxes = masks_to_boxes(m)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[2, 1, 5, 3], [7, 5, 8, 6], [0, 0, 0, 0]])
    assert masks_to_boxes(np.zeros((0, 4, 4), bool)).shape == (0, 4)
    with pytest.raises(ValueError, match="masks"):
        masks_to_boxes(np.zeros((4, 4), bool))


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"split": "test"}, ValueError, "split"),
        ({"size": 16}, ValueError, "size"),
        ({"size": (64, 64, 3)}, ValueError, "size"),
        ({"size": 64.0}, TypeError, "size"),
        ({"num_images": 0}, ValueError, "num_images"),
        ({"num_images": 2.5}, TypeError, "num_images"),
        ({"seed": -1}, ValueError, "seed"),
        ({"max_objects": 0}, ValueError, "max_objects"),
        ({"transform": 3}, TypeError, "transform"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        ShapesDataset(**kwargs)


def test_bad_index():
    ds = ShapesDataset("val", num_images=3)
    with pytest.raises(IndexError, match="3"):
        ds[3]
    with pytest.raises(TypeError, match="index"):
        ds["a"]
    assert len(list(ds)) == 3


def test_open_dataset_shapes_and_errors(tmp_path):
    ds = open_dataset("shapes", "val", num_images=4, size=(32, 48))
    assert (
        isinstance(ds, ShapesDataset) and ds.split == "val" and ds[0]["image"].shape == (3, 32, 48)
    )
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="nowhere"):
        open_dataset(str(missing), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="JPEGImages"):
        open_dataset(tmp_path / "empty", "train")
    with pytest.raises(TypeError, match="spec"):
        open_dataset(3, "train")


@pytest.mark.parametrize(
    "folder, module, cls",
    [("JPEGImages", "voc", "VOCSegmentation"), ("annotations", "coco", "COCODataset")],
)
def test_open_dataset_dispatches_folders(tmp_path, monkeypatch, folder, module, cls):
    import importlib
    import sys
    import types

    (tmp_path / folder).mkdir()
    calls = []

    class Fake:
        def __init__(self, root, split="train", transform=None):
            calls.append((root, split, transform))

    try:
        mod = importlib.import_module(f"tinyseg.data.{module}")
    except ImportError:  # the reader is not there yet: stand a fake module in its place
        mod = types.ModuleType(f"tinyseg.data.{module}")
        monkeypatch.setitem(sys.modules, f"tinyseg.data.{module}", mod)
        import tinyseg.data

        monkeypatch.setattr(tinyseg.data, module, mod, raising=False)
    monkeypatch.setattr(mod, cls, Fake, raising=False)
    ds = open_dataset(str(tmp_path), "val", transform="t")
    assert isinstance(ds, Fake)
    assert calls == [(str(tmp_path), "val", "t")]
