"""The standing fuzz table of the data layer: bad image files, COCO JSON and VOC folders.

Every row is a small file (or folder) that the session fixture ``bad_files`` writes once under
a temporary folder, and one call on it: ``read_rgb`` / ``read_rgb_uint8`` (the one image
reader, which the CLI's ``predict`` uses too), ``COCODataset``, ``VOCSegmentation`` and the
``viz`` functions that take an image. Each row expects a clear error naming the file (and the
annotation id where there is one) or a documented correct result (see
docs/datasets-on-disk.md). The folder names are unique, so a pattern naming the folder names
the file.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from badinput import Case, clear, correct, params, run_case
from PIL import Image

from tinyseg import cli, viz
from tinyseg.data.coco import COCODataset, export_coco
from tinyseg.data.files import read_rgb, read_rgb_uint8
from tinyseg.data.voc import VOCSegmentation

ROOT: dict[str, Path] = {}  # filled by the bad_files fixture before any row runs


def p(name: str) -> Path:
    return ROOT["dir"] / name


# --------------------------------------------------------------------------- image files

RAMP8 = np.arange(256, dtype=np.uint8).reshape(4, 64)  # every 8-bit level once
H, W = 8, 10  # the COCO and VOC image


def write_png16_rgb(path: Path, values: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): signature, IHDR, IDAT, IEND."""
    h, w, _ = values.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)  # filter 0 each row
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, colour type 2: RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_images(d: Path) -> None:
    ramp16 = RAMP8.astype(np.uint16) * 257  # an 8-bit ramp stretched to 16 bits
    Image.fromarray(ramp16).save(d / "ramp16.png")  # mode "I;16"
    Image.fromarray(np.array([[0, 255, 256, 511, 32768, 65535]], np.uint16)).save(d / "edges16.png")
    Image.fromarray(ramp16).save(d / "ramp16.tif")  # a 16-bit TIFF: "I;16" as well
    Image.fromarray(ramp16.astype(np.int32)).save(d / "ramp_i32.tif")  # mode "I"
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(d / "over16.tif")
    Image.fromarray(np.array([[0.0, 0.5]], np.float32)).save(d / "float.tif")  # mode "F"
    write_png16_rgb(d / "rgb16.png", np.stack([ramp16, ramp16[::-1], ramp16 // 2], axis=-1))
    pal = Image.fromarray(np.array([[0, 1, 2]], np.uint8))
    pal.putpalette([0, 0, 0, 200, 10, 20, 5, 250, 6])
    pal.save(d / "palette.png")
    Image.new("CMYK", (3, 2), (255, 0, 0, 0)).save(d / "cmyk.tif")  # pure cyan
    Image.new("RGBA", (3, 2), (10, 20, 30, 0)).save(d / "rgba.png")  # transparent
    Image.new("LA", (3, 2), (100, 7)).save(d / "la.png")
    Image.new("1", (3, 2), 1).save(d / "bilevel.png")
    Image.fromarray(np.full((1, 7, 3), 40, np.uint8)).save(d / "one_high.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(d / "huge.png")  # huge below the limit
    Image.fromarray(RAMP8).save(d / "good.png")
    whole = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (d / "empty.png").write_bytes(b"")
    (d / "folder.png").mkdir()


def with_pixel_limit(limit: int, call):
    """Run ``call`` with Pillow's decompression-bomb limit lowered, then put it back."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        return call()
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def grey(value):
    """Check: an RGB uint8 result whose three channels all equal ``value`` (broadcast)."""
    return lambda rgb: rgb.dtype == np.uint8 and all(
        np.array_equal(rgb[..., c], np.broadcast_to(value, rgb.shape[:2])) for c in range(3))


def colour(rgb_value):
    return lambda rgb: rgb.dtype == np.uint8 and bool((rgb == np.uint8(rgb_value)).all())


IMAGES = [
    Case("16bit-grey-ramp-png", lambda: read_rgb_uint8(p("ramp16.png")), correct(grey(RAMP8))),
    Case("16bit-grey-high-byte", lambda: read_rgb_uint8(p("edges16.png")),
         correct(grey(np.array([[0, 0, 1, 1, 128, 255]])))),
    Case("16bit-float-reader", lambda: read_rgb(p("ramp16.png")),
         correct(lambda x: x.shape == (3, 4, 64) and np.allclose(x[1], RAMP8 / 255.0))),
    Case("16bit-tiff", lambda: read_rgb_uint8(p("ramp16.tif")), correct(grey(RAMP8))),
    Case("32bit-int-16bit-values", lambda: read_rgb_uint8(p("ramp_i32.tif")), correct(grey(RAMP8))),
    Case("32bit-int-over-16bit", lambda: read_rgb_uint8(p("over16.tif")),
         clear(ValueError, r"over16\.tif.*outside the 16-bit range")),
    Case("32bit-float", lambda: read_rgb_uint8(p("float.tif")),
         clear(ValueError, r"float\.tif.*mode 'F'")),
    Case("16bit-rgb-png", lambda: read_rgb_uint8(p("rgb16.png")),
         correct(lambda x: np.array_equal(x[..., 0], RAMP8)
                 and np.array_equal(x[..., 1], RAMP8[::-1])
                 and np.array_equal(x[..., 2], (RAMP8.astype(np.uint16) * 257 // 2 >> 8)))),
    Case("palette", lambda: read_rgb_uint8(p("palette.png")),
         correct(lambda x: x.tolist() == [[[0, 0, 0], [200, 10, 20], [5, 250, 6]]])),
    Case("cmyk", lambda: read_rgb_uint8(p("cmyk.tif")), correct(colour((0, 255, 255)))),
    Case("rgba-alpha-dropped", lambda: read_rgb_uint8(p("rgba.png")),
         correct(colour((10, 20, 30)))),
    Case("grey-alpha", lambda: read_rgb_uint8(p("la.png")), correct(colour((100, 100, 100)))),
    Case("bilevel", lambda: read_rgb_uint8(p("bilevel.png")), correct(colour((255, 255, 255)))),
    Case("one-pixel-high", lambda: read_rgb(p("one_high.png")),
         correct(lambda x: x.shape == (3, 1, 7))),
    Case("truncated", lambda: read_rgb(p("truncated.png")),
         clear(ValueError, r"cannot read image .*truncated\.png")),
    Case("corrupt", lambda: read_rgb(p("corrupt.png")),
         clear(ValueError, r"cannot read image .*corrupt\.png")),
    Case("empty-file", lambda: read_rgb(p("empty.png")),
         clear(ValueError, r"cannot read image .*empty\.png")),
    Case("folder-not-file", lambda: read_rgb(p("folder.png")),
         clear(IsADirectoryError, r"folder, not a file: .*folder\.png")),
    Case("missing-file", lambda: read_rgb(p("nothing.png")),
         clear(FileNotFoundError, r"image file not found: .*nothing\.png")),
    Case("decompression-bomb", lambda: with_pixel_limit(1000, lambda: read_rgb(p("huge.png"))),
         clear(ValueError, r"huge\.png is too large.*MAX_IMAGE_PIXELS")),
    # the CLI's predict reads its pictures with the same reader
    Case("cli-16bit-ramp", lambda: cli._read_image(p("ramp16.png")), correct(grey(RAMP8))),
    Case("cli-folder", lambda: cli._read_image(p("folder.png")),
         clear(OSError, r"folder\.png")),
    Case("cli-decompression-bomb",
         lambda: with_pixel_limit(1000, lambda: cli._read_image(p("huge.png"))),
         clear(ValueError, r"huge\.png is too large")),
]

# --------------------------------------------------------------------------- viz layouts

STRIPE = np.linspace(0, 1, 3 * 5 * 3, dtype=np.float32).reshape(3, 5, 3)

VIZ = [
    Case("overlay-1-high-hwc", lambda: viz.overlay(np.full((1, 5, 3), 0.25, np.float32),
                                                   np.zeros((1, 5), np.int64)),
         correct(lambda x: x.shape == (1, 5, 3) and np.allclose(x, 0.25))),
    Case("overlay-3-high-hwc", lambda: viz.overlay(STRIPE, np.zeros((3, 5), np.int64)),
         correct(lambda x: x.shape == (3, 5, 3) and np.allclose(x, STRIPE))),
    Case("overlay-3-high-uint8", lambda: viz.overlay(np.full((3, 4, 3), 255, np.uint8),
                                                     np.zeros((3, 4), np.int64)),
         correct(lambda x: x.shape == (3, 4, 3) and np.allclose(x, 1.0))),
    Case("overlay-chw-still-read", lambda: viz.overlay(np.zeros((3, 6, 7), np.float32),
                                                       np.zeros((6, 7), np.int64)),
         correct(lambda x: x.shape == (6, 7, 3))),
    Case("overlay-instances-1-high", lambda: viz.overlay_instances(np.zeros((1, 5, 3), np.uint8),
                                                                   np.zeros((0, 1, 5), bool)),
         correct(lambda x: x.shape == (1, 5, 3))),
    Case("save-image-3-high",
         lambda: np.asarray(Image.open(viz.save_image(p("three_high_out.png"), STRIPE))),
         correct(lambda x: x.shape == (3, 5, 3) and np.abs(x / 255.0 - STRIPE).max() < 0.01)),
    Case("overlay-bad-shape", lambda: viz.overlay(np.zeros((4, 5, 6)), np.zeros((4, 5), np.int64)),
         clear(ValueError, r"image must be \(3, H, W\) or \(H, W, 3\), got shape \(4, 5, 6\)")),
]

# --------------------------------------------------------------------------- COCO JSON


def coco_base() -> dict:
    return {
        "images": [{"id": 1, "file_name": "p.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [1, 1, 4, 3],
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
        ],
    }  # fmt: skip


def ann(**changes):
    """The base annotation (id 7) with ``changes``; a None value deletes the key."""
    def edit(data):
        a = data["annotations"][0]
        for key, value in changes.items():
            if value is None:
                a.pop(key, None)
            else:
                a[key] = value
    return edit


def twice(key):
    def edit(data):
        data[key].append(dict(data[key][0]))
    return edit


# folder name -> an edit of the base JSON (a function data -> None, or a replacement dict)
COCO_FOLDERS = {
    "coco_ok": lambda data: None,
    "coco_no_images": lambda data: data.pop("images"),
    "coco_annotations_not_list": lambda data: data.update(annotations={"id": 7}),
    "coco_category_id_str": ann(category_id="1"),
    "coco_ann_id_str": ann(id="seven"),
    "coco_unknown_category": ann(category_id=9),
    "coco_unknown_image": ann(image_id=4),
    "coco_no_image_id": ann(image_id=None),
    "coco_polygon_2_points": ann(segmentation=[[1, 1, 5, 1]]),
    "coco_polygon_odd": ann(segmentation=[[1, 1, 5, 1, 5]]),
    "coco_polygon_strings": ann(segmentation=[["1", 1, 5, 1, 5, 4]]),
    "coco_zero_width": ann(bbox=[1, 1, 0, 3]),
    "coco_zero_height": ann(bbox=[1, 1, 4, 0]),
    "coco_negative_width": ann(bbox=[5, 1, -4, 3]),
    "coco_bbox_three_numbers": ann(bbox=[1, 1, 4]),
    "coco_bbox_outside": ann(bbox=[20, 1, 4, 3], segmentation=None),
    "coco_bbox_partly_outside": ann(bbox=[6, -3, 8, 6], segmentation=None),
    "coco_bbox_edge_rounding": ann(bbox=[0, 0, 10.4, 8.2], segmentation=None),
    "coco_crowd_rle_bad_counts": ann(iscrowd=1, segmentation={"size": [H, W], "counts": [1, 2]}),
    "coco_crowd_rle_counts_int": ann(iscrowd=1, segmentation={"size": [H, W], "counts": 5}),
    "coco_crowd_rle_no_size": ann(iscrowd=1, segmentation={"counts": [H * W]}),
    "coco_crowd_rle_bad_string": ann(iscrowd=1, segmentation={"size": [H, W], "counts": "~~"}),
    "coco_iscrowd_2": ann(iscrowd=2),
    "coco_empty_mask_no_bbox": ann(bbox=None, segmentation=[[20, 20, 30, 20, 30, 30]]),
    "coco_duplicate_annotation": twice("annotations"),
    "coco_duplicate_image": twice("images"),
    "coco_duplicate_category": twice("categories"),
    "coco_image_height_zero": lambda data: data["images"][0].update(height=0),
    "coco_16bit_image": lambda data: data["images"][0].update(file_name="ramp16.png"),
}


def write_coco(d: Path) -> None:
    for name, edit in COCO_FOLDERS.items():
        (d / name / "images").mkdir(parents=True)
        (d / name / "annotations").mkdir()
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(d / name / "images/p.png")
        ramp = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 800).astype(np.uint16)
        Image.fromarray(ramp).save(d / name / "images/ramp16.png")
        data = coco_base()
        edit(data)
        (d / name / "annotations/instances_train.json").write_text(json.dumps(data))


def coco(name: str, index=None):
    def call():
        ds = COCODataset(p(name), "train")
        return ds if index is None else ds[index]
    return call


def json_of(name: str) -> str:
    return name + r"/annotations/instances_train\.json"


def clipped_with_warning(name: str):
    """Read the sample, asserting that one warning names the file and the annotation id."""
    def call():
        with pytest.warns(UserWarning, match=json_of(name) + r".*clipped.*annotation id 7"):
            return coco(name, 0)()
    return call


def quiet(call):
    """Run ``call``, asserting that it warns nothing."""
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return call()
    return run


def bad_ann(name: str, words: str, error=ValueError):
    return clear(error, json_of(name) + r".*annotation id 7.*" + words)


class OneSample:
    """A dataset of one sample with an instance whose mask is empty (so its box has no size)."""

    classes = ("background", "cat")

    def __len__(self):
        return 1

    def __getitem__(self, i):
        masks = np.zeros((1, H, W), bool)
        return {"image": np.zeros((3, H, W), np.float32), "mask": np.zeros((H, W), np.int64),
                "instance_masks": masks, "labels": np.array([1]), "id": "empty"}


COCO = [
    Case("coco-export-instance-of-no-size",
         lambda: export_coco(p("coco_export_empty"), {"train": OneSample()}),
         clear(ValueError, r"export_coco\(\): splits\['train'\]\[0\]: instance 0 has the box "
                           r"\[0\.0, 0\.0, 0\.0, 0\.0\] of no size")),
    Case("coco-good", coco("coco_ok", 0),
         correct(lambda s: s["boxes"].tolist() == [[1, 1, 5, 4]]
                 and s["instance_masks"].sum() == 12)),
    Case("coco-missing-images", coco("coco_no_images"),
         clear(ValueError, json_of("coco_no_images") + r'.*missing the "images" list')),
    Case("coco-annotations-not-list", coco("coco_annotations_not_list"),
         clear(ValueError, json_of("coco_annotations_not_list") + r'.*"annotations" must be a')),
    Case("coco-category-id-wrong-type", coco("coco_category_id_str"),
         bad_ann("coco_category_id_str", r'"category_id" has the wrong type')),
    Case("coco-annotation-id-wrong-type", coco("coco_ann_id_str"),
         clear(ValueError, json_of("coco_ann_id_str") + r'.*annotations\[0\]: "id" has the wrong')),
    Case("coco-unknown-category", coco("coco_unknown_category"),
         bad_ann("coco_unknown_category", r"category id 9")),
    Case("coco-unknown-image", coco("coco_unknown_image"),
         bad_ann("coco_unknown_image", r"image id 4, which is not in")),
    Case("coco-no-image-id", coco("coco_no_image_id"),
         bad_ann("coco_no_image_id", r'has no "image_id"')),
    Case("coco-polygon-2-points", coco("coco_polygon_2_points"),
         bad_ann("coco_polygon_2_points", r"polygon 0 has 2 point\(s\).*at least 3")),
    Case("coco-polygon-odd-length", coco("coco_polygon_odd"),
         bad_ann("coco_polygon_odd", r"polygon 0 must be a flat list")),
    Case("coco-polygon-strings", coco("coco_polygon_strings"),
         bad_ann("coco_polygon_strings", r"polygon 0 must be a flat list")),
    Case("coco-zero-width-bbox", coco("coco_zero_width"),
         bad_ann("coco_zero_width", r"width 0 and height 3; both must be positive")),
    Case("coco-zero-height-bbox", coco("coco_zero_height"),
         bad_ann("coco_zero_height", r"width 4 and height 0; both must be positive")),
    Case("coco-negative-width-bbox", coco("coco_negative_width"),
         bad_ann("coco_negative_width", r"width -4 and height 3")),
    Case("coco-bbox-three-numbers", coco("coco_bbox_three_numbers"),
         bad_ann("coco_bbox_three_numbers", r'"bbox" must be \[x, y, width, height\]')),
    Case("coco-bbox-wholly-outside", coco("coco_bbox_outside"),
         bad_ann("coco_bbox_outside", r"wholly outside image id 1 \(width 10, height 8\)")),
    Case("coco-bbox-partly-outside-clipped", clipped_with_warning("coco_bbox_partly_outside"),
         correct(lambda s: s["boxes"].tolist() == [[6, 0, 10, 3]]
                 and s["instance_masks"][0].sum() == 4 * 3)),
    Case("coco-bbox-edge-rounding-quiet", quiet(coco("coco_bbox_edge_rounding", 0)),
         correct(lambda s: s["boxes"].tolist() == [[0, 0, 10, 8]])),
    Case("coco-crowd-rle-bad-counts", coco("coco_crowd_rle_bad_counts", 0),
         bad_ann("coco_crowd_rle_bad_counts", r"bad segmentation")),
    Case("coco-crowd-rle-counts-int", coco("coco_crowd_rle_counts_int"),
         bad_ann("coco_crowd_rle_counts_int", r'RLE "counts" must be a string or a list')),
    Case("coco-crowd-rle-no-size", coco("coco_crowd_rle_no_size"),
         bad_ann("coco_crowd_rle_no_size", r"RLE size None does not match")),
    Case("coco-crowd-rle-bad-string", coco("coco_crowd_rle_bad_string", 0),
         bad_ann("coco_crowd_rle_bad_string", r"bad segmentation")),
    Case("coco-iscrowd-2", coco("coco_iscrowd_2"),
         bad_ann("coco_iscrowd_2", r'"iscrowd" must be 0 or 1, got 2')),
    Case("coco-empty-mask-no-bbox", coco("coco_empty_mask_no_bbox", 0),
         bad_ann("coco_empty_mask_no_bbox", r"covers no pixel .*p\.png and it has no bbox")),
    Case("coco-duplicate-annotation-id", coco("coco_duplicate_annotation"),
         clear(ValueError, json_of("coco_duplicate_annotation") + r".*annotation id 7 appears")),
    Case("coco-duplicate-image-id", coco("coco_duplicate_image"),
         clear(ValueError, json_of("coco_duplicate_image") + r".*image id 1 appears twice")),
    Case("coco-duplicate-category-id", coco("coco_duplicate_category"),
         clear(ValueError, json_of("coco_duplicate_category") + r".*category id 1 appears twice")),
    Case("coco-image-height-zero", coco("coco_image_height_zero"),
         clear(ValueError, json_of("coco_image_height_zero") + r".*images\[0\]: height 0 and")),
    Case("coco-16bit-image", coco("coco_16bit_image", 0),
         correct(lambda s: np.allclose(s["image"][0].ravel(),
                                       (np.arange(H * W) * 800 >> 8) / 255.0))),
]

# --------------------------------------------------------------------------- VOC folders

VOC_FOLDERS = {
    # name -> (image (H, W[, 3]) uint16/uint8, mask, split lines, classes.txt lines or None)
    "voc_ok": ("rgb", "good", ["a"], None),
    "voc_mask_size": ("rgb", "small", ["a"], None),
    "voc_mask_values": ("rgb", "value_30", ["a"], ["background", "cat", "dog"]),
    "voc_mask_16bit": ("rgb", "sixteen", ["a"], None),
    "voc_mask_rgb": ("rgb", "rgb", ["a"], None),
    "voc_id_twice": ("rgb", "good", ["a", "b", "a"], None),
    "voc_classes_twice": ("rgb", "good", ["a"], ["background", "cat", "cat"]),
    "voc_16bit_image": ("ramp16", "good", ["a"], None),
    "voc_image_folder": ("folder", "good", ["a"], None),
}


def write_voc(d: Path) -> None:
    good = np.zeros((H, W), np.uint8)
    good[2:5, 3:7], good[0, :] = 1, 255
    masks = {"good": good, "small": good[:-1], "value_30": np.where(good == 1, 30, good)}
    for name, (image, mask, ids, classes) in VOC_FOLDERS.items():
        root = d / name
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (root / sub).mkdir(parents=True)
        for sid in dict.fromkeys(ids):
            jpg, png = root / f"JPEGImages/{sid}.jpg", root / f"SegmentationClass/{sid}.png"
            if image == "folder":
                jpg.mkdir()
            elif image == "ramp16":  # a lossless PNG under the .jpg name: Pillow reads the content
                ramp = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 800).astype(np.uint16)
                Image.fromarray(ramp).save(jpg, format="PNG")
            else:
                Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(jpg, quality=95)
            if mask == "sixteen":
                Image.fromarray(good.astype(np.uint16)).save(png)
            elif mask == "rgb":
                Image.fromarray(np.repeat(good[..., None], 3, axis=-1)).save(png)
            else:
                Image.fromarray(masks[mask]).save(png)
        (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in ids))
        if classes is not None:
            (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))


def voc(name: str, split: str = "train", index=None):
    def call():
        ds = VOCSegmentation(p(name), split)
        return ds if index is None else ds[index]
    return call


VOC = [
    Case("voc-good", voc("voc_ok", index=0),
         correct(lambda s: s["mask"].shape == (H, W) and int(s["mask"].sum()) == 12 + 255 * W)),
    Case("voc-missing-split-file", voc("voc_ok", "val"),
         clear(FileNotFoundError, r"split file not found: .*voc_ok/ImageSets/Segmentation/val\.txt"
                                  r".*\['train'\]")),
    Case("voc-mask-size-mismatch", voc("voc_mask_size", index=0),
         clear(ValueError, r"mask .*voc_mask_size/SegmentationClass/a\.png is 10x7"
                           r".*a\.jpg is 10x8")),
    Case("voc-mask-values-out-of-range", voc("voc_mask_values", index=0),
         clear(ValueError, r"mask .*voc_mask_values/SegmentationClass/a\.png holds values \[30\]")),
    Case("voc-mask-16bit", voc("voc_mask_16bit", index=0),
         clear(ValueError, r"mask .*voc_mask_16bit/SegmentationClass/a\.png must be a palette")),
    Case("voc-mask-rgb", voc("voc_mask_rgb", index=0),
         clear(ValueError, r"mask .*voc_mask_rgb/SegmentationClass/a\.png must be a palette")),
    Case("voc-id-listed-twice", voc("voc_id_twice"),
         clear(ValueError, r"voc_id_twice/ImageSets/Segmentation/train\.txt, line 3: id 'a' is "
                           r"already listed on line 1")),
    Case("voc-class-named-twice", voc("voc_classes_twice"),
         clear(ValueError, r"voc_classes_twice/classes\.txt: class names must differ, "
                           r"got \['cat'\]")),
    Case("voc-16bit-image", voc("voc_16bit_image", index=0),
         correct(lambda s: np.allclose(s["image"][2].ravel(),
                                       (np.arange(H * W) * 800 >> 8) / 255.0))),
    Case("voc-image-is-a-folder", voc("voc_image_folder"),
         clear(FileNotFoundError, r"file not found: .*voc_image_folder/JPEGImages/a\.jpg")),
]

TABLE = IMAGES + VIZ + COCO + VOC


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_data")
    write_images(d)
    write_coco(d)
    write_voc(d)
    ROOT["dir"] = d
    return d


@pytest.mark.parametrize("case", params(TABLE))
def test_bad_data_input(case, bad_files):
    run_case(case)
