"""VOC-style folders: export then read back, and an error that names the file for each fault."""

import re

import numpy as np
import pytest
from PIL import Image

from tinyseg.data.voc import VOC_CLASSES, VOCSegmentation, export_voc, voc_colormap

CLASSES = ("background", "cat", "dog")


class ListDataset:
    """The smallest dataset: a list of sample dicts and class names."""

    def __init__(self, samples, classes=CLASSES):
        self.samples, self.classes = samples, classes

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def make_sample(sid, h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth image: JPEG keeps it close, so the round-trip tolerance can be tight.
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    image = np.stack([yy, xx, 0.5 + 0.3 * np.sin(3 * yy + xx)]).astype(np.float32)
    image = np.clip(image + rng.uniform(-0.05, 0.05, 3)[:, None, None], 0, 1).astype(np.float32)
    mask = np.zeros((h, w), dtype=np.int64)
    mask[2:7, 3:9] = 1
    mask[6:10, 10:14] = 2
    mask[1, :] = 255  # an ignore line, as VOC draws round objects
    return {
        "image": image,
        "mask": mask,
        "instance_masks": np.zeros((0, h, w), bool),
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "id": sid,
    }


@pytest.fixture
def voc_root(tmp_path):
    train = ListDataset([make_sample("a0", seed=0), make_sample("a1", h=10, w=8, seed=1)])
    val = ListDataset([make_sample("b0", seed=2)])
    return export_voc(tmp_path / "voc", {"train": train, "val": val}), train, val


def named(path):
    """pytest.raises match for a message that names ``path``."""
    return re.escape(str(path))


# ----------------------------------------------------------------------------- round trips


def test_round_trip_masks_exact_images_close(voc_root):
    root, train, val = voc_root
    for split, ds in (("train", train), ("val", val)):
        read = VOCSegmentation(root, split)
        assert len(read) == len(ds) and read.classes == CLASSES
        for i in range(len(ds)):
            a, b = ds[i], read[i]
            assert b["id"] == a["id"]
            assert b["mask"].dtype == np.int64
            np.testing.assert_array_equal(b["mask"], a["mask"])
            assert b["image"].dtype == np.float32 and b["image"].shape == a["image"].shape
            err = np.abs(b["image"] - a["image"])
            assert err.mean() < 0.01 and err.max() < 0.05  # JPEG quality 95, 4:4:4
            h, w = a["mask"].shape
            assert b["instance_masks"].shape == (0, h, w) and b["instance_masks"].dtype == bool
            assert b["boxes"].shape == (0, 4) and b["boxes"].dtype == np.float32
            assert b["labels"].shape == (0,) and b["labels"].dtype == np.int64


def test_written_files_follow_the_voc_conventions(voc_root):
    root, _, _ = voc_root
    assert (root / "ImageSets/Segmentation/train.txt").read_text() == "a0\na1\n"
    assert (root / "classes.txt").read_text().splitlines() == list(CLASSES)
    with Image.open(root / "SegmentationClass/a0.png") as png:
        assert png.format == "PNG" and png.mode == "P"
        palette = np.array(png.getpalette()[: 256 * 3]).reshape(256, 3)
        assert np.asarray(png)[4, 4] == 1
    np.testing.assert_array_equal(palette, voc_colormap())
    with Image.open(root / "JPEGImages/a0.jpg") as jpg:
        assert jpg.format == "JPEG" and jpg.size == (16, 12)


def test_voc_colormap_known_entries():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[2].tolist() == [0, 128, 0]
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert cmap[255].tolist() == [224, 224, 192]  # the void border


def test_shapes_round_trip(tmp_path):
    shapes = pytest.importorskip("tinyseg.data.shapes")
    train = shapes.ShapesDataset("train", num_images=3, size=32)
    val = shapes.ShapesDataset("val", num_images=2, size=32)
    root = export_voc(tmp_path / "shapes_voc", {"train": train, "val": val})
    for split, ds in (("train", train), ("val", val)):
        read = VOCSegmentation(root, split)
        assert read.classes == tuple(ds.classes)
        for i in range(len(ds)):
            a, b = ds[i], read[i]
            np.testing.assert_array_equal(b["mask"], a["mask"])
            assert np.abs(b["image"] - a["image"]).mean() < 0.03  # noisy scenes, still JPEG-close


def test_call_forms_and_default_classes(tmp_path):
    ds = ListDataset([make_sample("c0")])
    root = export_voc(ds, tmp_path / "one")  # dataset, root: a single "train" split
    assert len(VOCSegmentation(root, "train")) == 1
    root2 = export_voc(root=tmp_path / "two", splits={"val": ds})
    assert len(VOCSegmentation(root2, "val")) == 1
    (root2 / "classes.txt").unlink()  # without classes.txt: the 21 VOC classes
    read = VOCSegmentation(root2, "val")
    assert read.classes == VOC_CLASSES and len(read.classes) == 21


def test_transform_gets_a_seeded_rng(voc_root):
    root, _, _ = voc_root

    def jitter(sample, rng):
        sample = dict(sample)
        sample["image"] = sample["image"] + np.float32(rng.uniform())
        return sample

    ds = VOCSegmentation(root, "train", transform=jitter)
    np.testing.assert_array_equal(ds[0]["image"], ds[0]["image"])  # same index, same draw
    assert not np.array_equal(ds[0]["image"], VOCSegmentation(root, "train")[0]["image"])
    with pytest.raises(TypeError, match="transform"):
        VOCSegmentation(root, "train", transform=3)


def test_open_dataset_picks_voc(voc_root):
    data = pytest.importorskip("tinyseg.data")
    if not hasattr(data, "open_dataset"):
        pytest.skip("open_dataset not there yet")
    root, _, _ = voc_root
    assert isinstance(data.open_dataset(str(root), "val"), VOCSegmentation)


def test_indexing(voc_root):
    root, _, _ = voc_root
    ds = VOCSegmentation(root, "train")
    assert ds[-1]["id"] == "a1" and [s["id"] for s in ds] == ["a0", "a1"]
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(TypeError, match="index"):
        ds["a0"]


# ----------------------------------------------------------------------------- errors name files


def test_missing_root_folder_or_split_file(voc_root, tmp_path):
    root, _, _ = voc_root
    with pytest.raises(FileNotFoundError, match=named(tmp_path / "nowhere")):
        VOCSegmentation(tmp_path / "nowhere", "train")
    split_file = root / "ImageSets/Segmentation/test.txt"
    with pytest.raises(FileNotFoundError, match=named(split_file)):
        VOCSegmentation(root, "test")
    (root / "SegmentationClass").rename(root / "Masks")
    with pytest.raises(FileNotFoundError, match=named(root / "SegmentationClass")):
        VOCSegmentation(root, "train")


@pytest.mark.parametrize("folder, suffix", [("JPEGImages", ".jpg"), ("SegmentationClass", ".png")])
def test_missing_image_or_mask_of_an_id(voc_root, folder, suffix):
    root, _, _ = voc_root
    path = root / folder / f"a1{suffix}"
    path.unlink()
    with pytest.raises(FileNotFoundError, match=named(path)):
        VOCSegmentation(root, "train")


def test_unreadable_image(voc_root):
    root, _, _ = voc_root
    path = root / "JPEGImages/a0.jpg"
    path.write_bytes(b"this is not a JPEG")
    ds = VOCSegmentation(root, "train")
    with pytest.raises(ValueError, match=named(path)):
        ds[0]


def test_mask_of_the_wrong_size(voc_root):
    root, _, _ = voc_root
    path = root / "SegmentationClass/a0.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(path)
    with pytest.raises(ValueError, match=named(path) + ".*5x5"):
        VOCSegmentation(root, "train")[0]


def test_mask_that_is_not_a_palette_png(voc_root):
    root, _, _ = voc_root
    path = root / "SegmentationClass/a0.png"
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(path)  # an RGB PNG
    with pytest.raises(ValueError, match=named(path) + ".*'RGB'"):
        VOCSegmentation(root, "train")[0]
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(path, format="JPEG")  # .png name, JPEG
    with pytest.raises(ValueError, match=named(path) + ".*JPEG"):
        VOCSegmentation(root, "train")[0]


def test_mask_values_outside_the_classes(voc_root):
    root, _, _ = voc_root
    path = root / "SegmentationClass/a0.png"
    Image.fromarray(np.full((12, 16), 7, np.uint8)).save(path)  # classes are 0..2 and 255
    with pytest.raises(ValueError, match=named(path) + r".*\[7\]"):
        VOCSegmentation(root, "train")[0]


def test_bad_split_file_and_classes_file(voc_root):
    root, _, _ = voc_root
    split_file = root / "ImageSets/Segmentation/train.txt"
    split_file.write_text("a0 1\n")
    with pytest.raises(ValueError, match=named(split_file) + ", line 1"):
        VOCSegmentation(root, "train")
    split_file.write_text("\n")
    with pytest.raises(ValueError, match=named(split_file)):
        VOCSegmentation(root, "train")
    classes_file = root / "classes.txt"
    classes_file.write_text("cat\ndog\n")
    with pytest.raises(ValueError, match=named(classes_file)):
        VOCSegmentation(root, "val")


def test_export_rejects_bad_samples(tmp_path):
    with pytest.raises(ValueError, match="used twice"):
        export_voc(tmp_path / "dup", {"train": ListDataset([make_sample("x"), make_sample("x")])})
    bad = make_sample("y")
    bad["mask"][0, 0] = 9
    with pytest.raises(ValueError, match="mask values"):
        export_voc(tmp_path / "bad", {"train": ListDataset([bad])})
    with pytest.raises(ValueError, match="id"):
        export_voc(tmp_path / "slash", {"train": ListDataset([make_sample("a/b")])})
    with pytest.raises(ValueError, match="classes"):
        export_voc(tmp_path / "cls", {"train": ListDataset([make_sample("z")], ("cat",))})
