"""Transforms keep image, mask, instance masks and boxes consistent; the loader batches by seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyseg.data import (
    Compose,
    DataLoader,
    Normalize,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Resize,
    ShapesDataset,
    collate,
    masks_to_boxes,
)

_DS = ShapesDataset("train", num_images=6, size=(48, 64), seed=2)


def coded(sample):
    """The sample with an image that encodes the mask: every channel = mask / 4."""
    out = dict(sample)
    out["image"] = np.repeat((sample["mask"] / 4.0).astype(np.float32)[None], 3, axis=0)
    return out


def check_consistent(sample):
    """mask == instance masks painted; boxes tight; no empty instance; lengths agree."""
    inst, mask, labels, boxes = (sample[k] for k in ("instance_masks", "mask", "labels", "boxes"))
    assert len(inst) == len(labels) == len(boxes)
    assert inst.shape[1:] == mask.shape == sample["image"].shape[1:]
    assert inst.dtype == np.bool_ and mask.dtype == np.int64 and boxes.dtype == np.float32
    assert labels.dtype == np.int64
    painted = np.where(mask == 255, 255, 0)
    for m, lab in zip(inst, labels):
        painted[m] = lab
    np.testing.assert_array_equal(painted, mask)
    assert inst.any(axis=(1, 2)).all()
    np.testing.assert_array_equal(boxes, masks_to_boxes(inst))


def test_flip_mirrors_everything():
    s = _DS[0]
    out = RandomHorizontalFlip(p=1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], s["image"][:, :, ::-1])
    np.testing.assert_array_equal(out["mask"], s["mask"][:, ::-1])
    check_consistent(out)
    w = s["image"].shape[-1]
    np.testing.assert_array_equal(out["boxes"][:, [0, 2]], w - s["boxes"][:, [2, 0]])
    same = RandomHorizontalFlip(p=0.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(same["image"], s["image"])
    np.testing.assert_array_equal(s["image"], _DS[0]["image"])


def test_flip_probability_uses_rng():
    rng = np.random.default_rng(1)
    flips = [
        not np.array_equal(RandomHorizontalFlip(0.5)(_DS[1], rng)["mask"], _DS[1]["mask"])
        for _ in range(40)
    ]
    assert 5 < sum(flips) < 35


def assert_image_follows_mask(image, labels):
    """For a ``coded`` sample: away from label edges the bilinear image equals mask / 4, so image
    and mask were moved by the same geometry. "Away" is: the 5x5 neighbourhood in the mask holds
    one label and lies inside the window. (Nearest sampling can skip a 1-pixel sliver that
    bilinear still reads, hence 95% rather than all.)"""
    valid = labels != 255
    code = np.where(valid, labels / 4.0, -1.0)  # -1: padding, and outside the window
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(code, 2, constant_values=-1.0), (5, 5))
    low, high = windows.min(axis=(2, 3)), windows.max(axis=(2, 3))
    flat = (low >= 0) & (low == high)
    if flat.any():
        agree = np.isclose(image[flat], code[flat], atol=1e-5)
        assert agree.mean() >= 0.95


@settings(max_examples=20, deadline=None)
@given(
    th=st.integers(8, 80),
    tw=st.integers(8, 80),
    low=st.floats(0.5, 1.5),
    span=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
    index=st.integers(0, 5),
)
def test_scale_crop_keeps_sample_consistent(th, tw, low, span, seed, index):
    s = coded(_DS[index])
    t = RandomScaleCrop(scale=(low, low + span), size=(th, tw))
    out = t(s, np.random.default_rng(seed))
    assert out["image"].shape == (3, th, tw) and out["image"].dtype == np.float32
    check_consistent(out)
    labels = out["mask"]
    pad = labels == 255
    assert (out["image"][:, pad] == 0).all()
    assert_image_follows_mask(out["image"][0], labels)
    # same Generator state -> same result
    again = t(s, np.random.default_rng(seed))
    np.testing.assert_array_equal(again["mask"], out["mask"])


@settings(max_examples=15, deadline=None)
@given(th=st.integers(4, 48), tw=st.integers(4, 64), seed=st.integers(0, 2**16))
def test_crop_without_scaling_is_a_window(th, tw, seed):
    s = _DS[0]
    out = RandomScaleCrop(scale=(1.0, 1.0), size=(th, tw))(s, np.random.default_rng(seed))
    check_consistent(out)
    img, mask = s["image"], s["mask"]
    found = [
        (y, x)
        for y in range(48 - th + 1)
        for x in range(64 - tw + 1)
        if np.array_equal(mask[y : y + th, x : x + tw], out["mask"])
        and np.array_equal(img[:, y : y + th, x : x + tw], out["image"])
    ]
    assert found


def test_scale_crop_default_size_and_boxes_without_masks():
    s = _DS[2]
    out = RandomScaleCrop()(s, np.random.default_rng(0))
    assert out["image"].shape == s["image"].shape
    check_consistent(out)
    # boxes only (no instance masks): mapped and clipped geometrically
    b = dict(s, instance_masks=np.zeros((0, 48, 64), bool))
    b["boxes"] = np.array([[0, 0, 64, 48], [10, 10, 20, 20]], np.float32)
    b["labels"] = np.array([1, 2], np.int64)
    out = RandomScaleCrop(scale=(2.0, 2.0), size=(48, 64))(b, np.random.default_rng(0))
    assert (out["boxes"][:, [0, 2]] <= 64).all() and (out["boxes"] >= 0).all()
    assert len(out["boxes"]) == len(out["labels"]) >= 1
    np.testing.assert_array_equal(out["boxes"][0], [0, 0, 64, 48])


def test_scale_crop_drops_instances_that_leave_the_window():
    s = _DS[0]
    outs = [RandomScaleCrop((1.0, 1.0), size=8)(s, np.random.default_rng(k)) for k in range(30)]
    for out in outs:
        check_consistent(out)
    assert min(len(o["labels"]) for o in outs) < len(s["labels"])


@settings(max_examples=15, deadline=None)
@given(th=st.integers(8, 96), tw=st.integers(8, 96), index=st.integers(0, 5))
def test_resize_stretches_every_key_together(th, tw, index):
    s = coded(_DS[index])
    out = Resize((th, tw))(s)
    assert out["image"].shape == (3, th, tw) and out["mask"].shape == (th, tw)
    check_consistent(out)
    assert not (out["mask"] == 255).any()  # a stretch has no padding
    assert_image_follows_mask(out["image"][0], out["mask"])
    np.testing.assert_array_equal(Resize((th, tw))(s)["mask"], out["mask"])  # no randomness


def test_resize_to_the_same_size_is_the_identity_and_doubling_repeats_pixels():
    s = _DS[0]
    same = Resize((48, 64))(s)
    for key in ("image", "mask", "instance_masks", "boxes", "labels"):
        np.testing.assert_array_equal(same[key], s[key])
    double = Resize((96, 128))(s)
    np.testing.assert_array_equal(double["mask"][::2, ::2], s["mask"])
    np.testing.assert_array_equal(double["mask"][1::2, 1::2], s["mask"])
    np.testing.assert_allclose(double["boxes"], 2 * s["boxes"])
    assert repr(Resize(32)) == "Resize(size=(32, 32))"


def test_resize_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        Resize(0)
    with pytest.raises(ValueError, match=r"sample\['image'\] must have shape \(C, H, W\)"):
        Resize(8)({"image": np.zeros((4, 4), np.float32)})


def test_normalize_and_inverse():
    s = _DS[0]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    t = Normalize(mean, std)
    out = t(s)
    expected = (s["image"] - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out["image"], expected, rtol=1e-5, atol=1e-6)
    assert out["image"].dtype == np.float32
    np.testing.assert_array_equal(out["mask"], s["mask"])
    np.testing.assert_allclose(t.inverse(out["image"]), s["image"], atol=1e-6)
    np.testing.assert_allclose(t.inverse(out["image"][None])[0], s["image"], atol=1e-6)


@pytest.mark.parametrize(
    "make, error, name",
    [
        (lambda: Normalize((0.5, 0.5, 0.5), (0.2, 0.0, 0.2)), ValueError, "std"),
        (lambda: Normalize((0.5, 0.5), (0.2, 0.2, 0.2)), ValueError, "std"),
        (lambda: RandomHorizontalFlip(p=1.5), ValueError, "p"),
        (lambda: RandomScaleCrop(scale=(1.2, 0.8)), ValueError, "scale"),
        (lambda: RandomScaleCrop(scale=3), ValueError, "scale"),
        (lambda: RandomScaleCrop(size=0), ValueError, "size"),
        (lambda: Compose([1]), TypeError, "transforms"),
    ],
)
def test_transform_bad_arguments(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_normalize_bad_image_and_bad_rng():
    with pytest.raises(ValueError, match="image"):
        Normalize((0.5,) * 4, (0.2,) * 4)(_DS[0])
    with pytest.raises(TypeError, match="rng"):
        RandomHorizontalFlip()(_DS[0], rng=3)


def test_compose_is_reproducible():
    t = Compose(
        [RandomHorizontalFlip(), RandomScaleCrop(size=32), Normalize((0.5,) * 3, (0.5,) * 3)]
    )
    a = t(_DS[3], np.random.default_rng(9))
    b = t(_DS[3], np.random.default_rng(9))
    for key in ("image", "mask", "boxes"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["image"].shape == (3, 32, 32)
    check_consistent(a)


# ----- DataLoader -----


def test_loader_batches_and_len():
    ds = ShapesDataset("val", num_images=10, size=32)
    loader = DataLoader(ds, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b["id"]) for b in batches] == [4, 4, 2]
    b = batches[0]
    assert b["image"].shape == (4, 3, 32, 32) and b["image"].dtype == np.float32
    assert b["mask"].shape == (4, 32, 32) and b["mask"].dtype == np.int64
    for key in ("boxes", "labels", "instance_masks", "id"):
        assert isinstance(b[key], list) and len(b[key]) == 4
    assert b["id"] == [f"shapes-val-{i:06d}" for i in range(4)]
    np.testing.assert_array_equal(b["mask"][2], ds[2]["mask"])
    np.testing.assert_array_equal(b["boxes"][1], ds[1]["boxes"])
    dropped = DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(b["id"]) for b in dropped] == [4, 4]
    assert len(DataLoader(ds, batch_size=20)) == 1 and len(DataLoader(ds, 20, drop_last=True)) == 0


def ids(loader):
    return [i for b in loader for i in b["id"]]


def test_loader_shuffle_by_seed_and_epoch():
    ds = ShapesDataset("val", num_images=12, size=32)
    a = DataLoader(ds, batch_size=5, shuffle=True, seed=3)
    b = DataLoader(ds, batch_size=5, shuffle=True, seed=3)
    first = ids(a)
    assert first == ids(b) == ids(a)  # same seed, same epoch -> same order, every time
    assert sorted(first) == sorted(ids(DataLoader(ds, batch_size=5)))
    assert first != ids(DataLoader(ds, batch_size=5))
    expected = np.random.default_rng(3 + 0).permutation(12)
    assert first == [f"shapes-val-{i:06d}" for i in expected]
    a.set_epoch(1)
    assert ids(a) != first
    assert ids(a) == [f"shapes-val-{i:06d}" for i in np.random.default_rng(4).permutation(12)]
    a.set_epoch(0)
    assert ids(a) == first
    assert ids(DataLoader(ds, batch_size=5, shuffle=True, seed=4)) != first


def test_loader_transform_reproducible_per_epoch_not_per_batching():
    ds = ShapesDataset("val", num_images=6, size=32)
    t = Compose([RandomHorizontalFlip(), RandomScaleCrop(size=24)])
    a = DataLoader(ds, batch_size=2, seed=1, transform=t)
    b = DataLoader(ds, batch_size=3, seed=1, transform=t)
    xa = np.concatenate([x["image"] for x in a])
    xb = np.concatenate([x["image"] for x in b])
    assert xa.shape == (6, 3, 24, 24)
    np.testing.assert_array_equal(xa, xb)
    a.set_epoch(1)
    assert not np.array_equal(np.concatenate([x["image"] for x in a]), xa)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"seed": -1}, ValueError, "seed"),
        ({"transform": "flip"}, TypeError, "transform"),
    ],
)
def test_loader_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        DataLoader(_DS, **kwargs)


def test_loader_bad_dataset_and_epoch():
    with pytest.raises(TypeError, match="dataset"):
        DataLoader(3)
    with pytest.raises(ValueError, match="epoch"):
        DataLoader(_DS).set_epoch(-1)


def test_collate_different_sizes_names_the_images():
    a = ShapesDataset("val", num_images=1, size=32)[0]
    b = ShapesDataset("val", num_images=1, size=48)[0]
    b["id"] = "big-one"
    with pytest.raises(ValueError, match="big-one"):
        collate([a, b])
    with pytest.raises(ValueError, match="samples"):
        collate([])
