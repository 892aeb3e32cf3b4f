"""COCO-style folders: a hand-written fixture, export then read back, errors that name the file."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from tinyseg.data.coco import COCODataset, export_coco
from tinyseg.data.rle import rle_encode

H, W = 8, 10


def named(path):
    return re.escape(str(path))


class ListDataset:
    def __init__(self, samples, classes=("background", "cat", "dog")):
        self.samples, self.classes = samples, classes

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def box_mask(r0, r1, c0, c1):
    m = np.zeros((H, W), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def write_fixture(root):
    """Two images, categories with non-contiguous ids, every kind of segmentation."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images/p.png")  # lossless: exact pixels
    Image.fromarray(pixels[:6, :4]).save(root / "images/q.png")
    crowd = box_mask(6, 8, 0, 3)
    crowd_list = rle_encode(crowd, compressed=False)
    data = {
        "images": [
            {"id": 10, "file_name": "p.png", "height": H, "width": W},
            {"id": 11, "file_name": "q.png", "height": 6, "width": 4},
        ],
        "categories": [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            # polygon rectangle: pixel centres in x [1, 5), y [1, 4) -> rows 1..3, cols 1..4
            {"id": 1, "image_id": 10, "category_id": 5, "iscrowd": 0, "bbox": [1, 1, 4, 3],
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            # compressed RLE, painted over the first
            {"id": 2, "image_id": 10, "category_id": 2, "iscrowd": 0, "bbox": [4, 3, 4, 3],
             "segmentation": rle_encode(box_mask(3, 6, 4, 8))},
            # crowd region as list counts -> ignore
            {"id": 3, "image_id": 10, "category_id": 2, "iscrowd": 1, "bbox": [0, 6, 3, 2],
             "segmentation": crowd_list},
            # no segmentation: the bbox is the mask
            {"id": 4, "image_id": 10, "category_id": 2, "bbox": [8, 0, 2, 2]},
        ],
    }  # fmt: skip
    path = root / "annotations/instances_train.json"
    path.write_text(json.dumps(data))
    return pixels, data, path


@pytest.fixture
def coco(tmp_path):
    root = tmp_path / "coco"
    pixels, data, path = write_fixture(root)
    return root, pixels, data, path


def rewrite(path, data):
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- reading


def test_hand_written_fixture(coco):
    root, pixels, _, _ = coco
    ds = COCODataset(root, "train")
    assert ds.classes == ("background", "cat", "dog")  # categories in id order: 2, 5
    assert len(ds) == 2
    s = ds[0]
    assert s["id"] == "p"
    np.testing.assert_array_equal(s["image"], pixels.transpose(2, 0, 1) / np.float32(255))
    assert s["image"].dtype == np.float32
    expected = np.zeros((H, W), dtype=np.int64)
    expected[1:4, 1:5] = 2  # dog polygon
    expected[3:6, 4:8] = 1  # cat RLE paints over it
    expected[0:2, 8:10] = 1  # bbox-only annotation
    expected[6:8, 0:3] = 255  # crowd -> ignore
    np.testing.assert_array_equal(s["mask"], expected)
    assert s["mask"].dtype == np.int64
    np.testing.assert_array_equal(s["labels"], [2, 1, 1])  # crowd left out
    assert s["labels"].dtype == np.int64
    np.testing.assert_array_equal(
        s["boxes"], np.array([[1, 1, 5, 4], [4, 3, 8, 6], [8, 0, 10, 2]], np.float32)
    )
    assert s["boxes"].dtype == np.float32
    im = s["instance_masks"]
    assert im.dtype == bool and im.shape == (3, H, W)
    np.testing.assert_array_equal(im[0], box_mask(1, 4, 1, 5))  # instances keep occluded pixels
    np.testing.assert_array_equal(im[1], box_mask(3, 6, 4, 8))
    empty = ds[1]
    assert empty["mask"].shape == (6, 4) and not empty["mask"].any()
    assert empty["instance_masks"].shape == (0, 6, 4) and empty["boxes"].shape == (0, 4)


def sample_with_instances(sid, seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 1:5, 1:6] = True
    masks[1, 4:8, 5:9] = True
    masks[0] &= ~masks[1]  # visible pixels only, as a scene generator gives them
    labels = np.array([1, 2], np.int64)
    mask = np.zeros((H, W), np.int64)
    for m, label in zip(masks, labels):
        mask[m] = label
    yy, xx = np.mgrid[0:H, 0:W] / 10.0
    image = np.stack([yy, xx, 0.5 + 0.2 * yy]).astype(np.float32) + rng.uniform(0, 0.1)
    return {
        "image": np.clip(image, 0, 1).astype(np.float32),
        "mask": mask,
        "instance_masks": masks,
        "boxes": np.array([[1, 1, 6, 5], [5, 4, 9, 8]], np.float32),
        "labels": labels,
        "id": sid,
    }


def test_export_round_trip(tmp_path):
    train = ListDataset([sample_with_instances("t0", 0), sample_with_instances("t1", 1)])
    val = ListDataset([sample_with_instances("v0", 2)])
    root = export_coco(tmp_path / "out", {"train": train, "val": val})
    data = json.loads((root / "annotations/instances_val.json").read_text())
    ann = data["annotations"][0]
    assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
    assert ann["bbox"] == [1.0, 1.0, 5.0, 4.0]
    assert ann["area"] == int(val[0]["instance_masks"][0].sum())
    assert [c["id"] for c in data["categories"]] == [1, 2]
    for split, ds in (("train", train), ("val", val)):
        read = COCODataset(root, split)
        assert read.classes == ds.classes
        for i in range(len(ds)):
            a, b = ds[i], read[i]
            assert b["id"] == a["id"]
            for key in ("mask", "instance_masks", "boxes", "labels"):
                np.testing.assert_array_equal(b[key], a[key], err_msg=key)
                assert b[key].dtype == a[key].dtype, key
            assert np.abs(b["image"] - a["image"]).max() < 0.05


def test_shapes_round_trip(tmp_path):
    shapes = pytest.importorskip("tinyseg.data.shapes")
    val = shapes.ShapesDataset("val", num_images=3, size=32)
    root = export_coco(val, tmp_path / "shapes_coco")  # (dataset, root): the "train" split
    read = COCODataset(root, "train")
    assert read.classes == tuple(val.classes)
    for i in range(len(val)):
        a, b = val[i], read[i]
        for key in ("mask", "instance_masks", "boxes", "labels"):
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)


def test_export_of_a_dataset_without_instances(tmp_path):
    sample = sample_with_instances("s0", 0)
    semantic_only = dict(sample)
    semantic_only["instance_masks"] = np.zeros((0, H, W), bool)
    semantic_only["boxes"] = np.zeros((0, 4), np.float32)
    semantic_only["labels"] = np.zeros(0, np.int64)
    root = export_coco(tmp_path / "sem", {"val": ListDataset([semantic_only])})
    b = COCODataset(root, "val")[0]
    np.testing.assert_array_equal(b["mask"], sample["mask"])  # one region per class
    np.testing.assert_array_equal(b["labels"], [1, 2])


def test_open_dataset_picks_coco(coco):
    data = pytest.importorskip("tinyseg.data")
    if not hasattr(data, "open_dataset"):
        pytest.skip("open_dataset not there yet")
    root, _, _, _ = coco
    assert isinstance(data.open_dataset(root, "train"), COCODataset)


# ----------------------------------------------------------------------------- errors name files


def test_missing_folders_and_json(coco, tmp_path):
    root, _, _, path = coco
    with pytest.raises(FileNotFoundError, match=named(tmp_path / "nowhere")):
        COCODataset(tmp_path / "nowhere", "train")
    missing = root / "annotations/instances_val.json"
    with pytest.raises(FileNotFoundError, match=named(missing)):
        COCODataset(root, "val")
    (root / "images").rename(root / "pictures")
    with pytest.raises(FileNotFoundError, match=named(root / "images")):
        COCODataset(root, "train")


def test_bad_json_gives_file_and_position(coco):
    root, _, _, path = coco
    path.write_text('{"images": [\n  {"id": 1,, }\n]}')
    with pytest.raises(ValueError, match=named(path) + r": bad JSON at line 2, column 12"):
        COCODataset(root, "train")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=named(path) + ".*top level"):
        COCODataset(root, "train")
    path.write_text('{"images": []}')
    with pytest.raises(ValueError, match=named(path) + '.*"categories"'):
        COCODataset(root, "train")


def test_missing_image_file(coco):
    root, _, _, path = coco
    (root / "images/q.png").unlink()
    with pytest.raises(FileNotFoundError, match=named(root / "images/q.png")):
        COCODataset(root, "train")


@pytest.mark.parametrize(
    "key, value, words",
    [("image_id", 99, "image id 99"), ("category_id", 7, "category id 7")],
)
def test_annotation_with_unknown_reference(coco, key, value, words):
    root, _, data, path = coco
    data["annotations"][1][key] = value
    rewrite(path, data)
    with pytest.raises(ValueError, match=named(path) + f": annotation id 2 refers to {words}"):
        COCODataset(root, "train")


def test_rle_size_not_matching_image(coco):
    root, _, data, path = coco
    data["annotations"][1]["segmentation"] = rle_encode(np.zeros((4, 4), bool))
    rewrite(path, data)
    with pytest.raises(ValueError, match=named(path) + r".*RLE size \[4, 4\]"):
        COCODataset(root, "train")


def test_image_size_not_matching_json(coco):
    root, _, data, path = coco
    data["images"][1]["height"] = 7
    rewrite(path, data)
    ds = COCODataset(root, "train")
    with pytest.raises(ValueError, match=named(root / "images/q.png") + ".*" + named(path)):
        ds[1]


def test_broken_counts_and_fields(coco):
    root, _, data, path = coco
    data["annotations"][2]["segmentation"]["counts"] = [1, 2, 3]  # does not sum to H*W
    rewrite(path, data)
    with pytest.raises(ValueError, match=named(path) + ".*annotation id 3.*counts"):
        COCODataset(root, "train")[0]
    del data["images"][0]["height"]
    rewrite(path, data)
    with pytest.raises(ValueError, match=named(path) + r'.*images\[0\] has no "height"'):
        COCODataset(root, "train")


def test_export_rejects_bad_labels(tmp_path):
    bad = sample_with_instances("b0", 0)
    bad["labels"] = np.array([1, 3])
    with pytest.raises(ValueError, match="labels"):
        export_coco(tmp_path / "bad", {"train": ListDataset([bad])})
