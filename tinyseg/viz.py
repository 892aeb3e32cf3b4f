"""Pictures of segmentations and detections: label maps, overlays, boxes, grids, curves.

Everything here works on host numpy arrays and draws with pyplot, leaving the
backend alone: inline in a notebook, and matplotlib's own fallback (Agg) on a
machine with no display, so it runs the same in a terminal, in CI and in class.

* ``colorize(labels)``: a label map (H, W) -> an RGB picture (H, W, 3) uint8,
  one fixed colour per class from ``PALETTE``: background black, the ignore
  label 255 white.
* ``overlay(image, labels)``: the label colours blended over the image, the
  background left untouched.
* ``predictions_figure`` / ``save_predictions``: a grid with one column per
  image and three rows, image / ground truth / prediction (``predictions.png``).
* ``draw_boxes`` / ``detections_figure``: boxes with class names and scores on an image;
  given a detector's predictions, ``save_predictions`` draws true and predicted boxes.

Nothing here runs a model (viz imports no engine): the engine predicts and
passes the images, the truth and the predictions in.
* ``plot_history``: loss and mIoU per epoch from ``history.csv``.
* ``save_mask_png``: a label map as a palette ("P" mode) PNG, whose pixel
  values are the labels themselves (readable back as labels, shown in colour).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .models.blocks import center_crop

IGNORE_COLOR = (255, 255, 255)

# Background black, then well-separated bright colours (class 1, 2, ...); repeats after 20.
_COLORS = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]


def _make_palette():
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(1, 255):
        palette[i] = _COLORS[1 + (i - 1) % (len(_COLORS) - 1)]
    palette[255] = IGNORE_COLOR
    return palette


#: (256, 3) uint8: the colour of each label value (0 black, 255 = ignore white).
PALETTE = _make_palette()


def _as_labels(labels):
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a label map (H, W), got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise TypeError(f"labels must hold integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must lie in 0..255")
    return labels.astype(np.intp)


def _as_hwc(image, channels_first=None):
    """(3, H, W) or (H, W, 3) float in [0, 1] (or uint8) -> (H, W, 3) float in [0, 1].

    ``channels_first=True`` / ``False`` says the layout; ``None`` reads it from the shape:
    channels last when the last axis has 1 or 3 entries (what Pillow gives, and an image only
    1 or 3 pixels high, (1, W, 3) or (3, W, 3), stays as it is), else channels first when the
    first axis has. So a (3, H, W) image only 1 or 3 pixels *wide* needs ``channels_first=True``
    (the figure functions, whose images are always (N, 3, H, W), pass it).
    """
    image = np.asarray(image)
    if image.ndim == 3:
        if channels_first is None:
            channels_first = image.shape[-1] not in (1, 3) and image.shape[0] in (1, 3)
        if channels_first:  # tinyseg's layout: (C, H, W)
            image = image.transpose(1, 2, 0)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def colorize(labels, palette=None):
    """Label map (H, W) -> RGB uint8 (H, W, 3) with ``palette[label]`` (default ``PALETTE``)."""
    palette = PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    return palette[_as_labels(labels)]


def overlay(image, labels, alpha: float = 0.5, palette=None):
    """Blend the class colours over ``image``; background (0) pixels keep the image.

    :param image: (3, H, W) or (H, W, 3), float in [0, 1] or uint8.
    :param labels: (H, W) integer labels.
    :param alpha: weight of the colour where a class is.
    :returns: (H, W, 3) float32 in [0, 1].
    """
    image = _as_hwc(image)
    labels = _as_labels(labels)
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image is {image.shape[:2]} but labels is {labels.shape}")
    colours = colorize(labels, palette).astype(np.float32) / 255.0
    weight = np.where(labels > 0, alpha, 0.0)[..., None].astype(np.float32)
    return (1.0 - weight) * image + weight * colours


def overlay_instances(image, masks, alpha: float = 0.5):
    """Blend one colour per instance over ``image`` (Mask R-CNN's output, or true instances).

    Instance i gets colour i of matplotlib's "tab10" cycle, so two objects of one class stay
    apart; a later mask is painted over an earlier one (give them best score last to keep the
    best on top).

    :param image: (3, H, W) or (H, W, 3), float in [0, 1] or uint8.
    :param masks: (D, H, W) bool instance masks (D may be 0).
    :param alpha: weight of the colour inside a mask.
    :returns: (H, W, 3) float32 in [0, 1].
    """
    import matplotlib

    out = _as_hwc(image).astype(np.float32).copy()
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != out.shape[:2]:
        raise ValueError(f"masks must have shape (D, {out.shape[0]}, {out.shape[1]}) for this "
                         f"image, got {masks.shape}")
    colours = matplotlib.colormaps["tab10"].colors
    for i, mask in enumerate(masks):
        colour = np.asarray(colours[i % len(colours)], dtype=np.float32)
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
    return out


def predictions_figure(images, targets, preds, classes=None, title=None):
    """A matplotlib Figure: one column per image; rows image, ground truth, prediction.

    :param images: (N, 3, H, W) float in [0, 1].
    :param targets: (N, H, W) labels (255 = ignore, drawn white).
    :param preds: (N, h, w) predicted labels; when smaller than the images (a
        valid-padding model) the images and targets are cut to their centre.
    :param classes: class names, for the legend.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    images, targets, preds = np.asarray(images), np.asarray(targets), np.asarray(preds)
    n = len(images)
    if n == 0:
        raise ValueError("predictions_figure needs at least one image")
    h, w = preds.shape[-2:]
    images, targets = center_crop(images, (h, w)), center_crop(targets, (h, w))
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n + 0.4, 6.2), squeeze=False)
    for j in range(n):
        panels = [_as_hwc(images[j], channels_first=True), colorize(targets[j]), colorize(preds[j])]
        for i, panel in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    for i, name in enumerate(["image", "ground truth", "prediction"]):
        axes[i, 0].set_ylabel(name)
    if classes:
        handles = [Patch(color=PALETTE[k] / 255.0, label=name)
                   for k, name in enumerate(classes) if k > 0]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05 if classes else 0, 1, 1))
    return fig


def save_predictions(path, images, targets, preds, classes=None, title=None) -> Path:
    """Save the picture of a model's predictions: ``predictions_figure`` or ``detections_figure``.

    viz never runs a model: the caller predicts (``tinyseg.engine``'s ``predict`` or
    ``predict_detections``, or its task's ``predict``) and hands the answers in.

    :param images: (N, 3, H, W) float in [0, 1].
    :param targets: the truth: label maps (N, H, W), or N dicts with "boxes" and "labels".
    :param preds: label maps (N, h, w) (an array: a segmentation), or N dicts of "boxes",
        "scores", "labels" (a list: a detector's output).
    """
    import matplotlib.pyplot as plt

    if isinstance(preds, np.ndarray):
        fig = predictions_figure(images, targets, preds, classes=classes, title=title)
    else:
        fig = detections_figure(images, targets, preds, classes=classes, title=title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def draw_boxes(ax, boxes, labels=None, scores=None, classes=None, palette=None,
               linewidth: float = 1.5, linestyle: str = "-"):
    """Draw xyxy ``boxes`` (N, 4) on a matplotlib ``ax``, coloured by class.

    Each box gets its class name (``classes[label]``, or the number) and, when ``scores`` is
    given, the score, written at its top-left corner.
    """
    from matplotlib.patches import Rectangle

    palette = PALETTE if palette is None else np.asarray(palette)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"labels must have one entry per box ({len(boxes)}), got {len(labels)}")
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        label = int(labels[i])
        colour = palette[label % len(palette)] / 255.0 if label > 0 else (1.0, 1.0, 1.0)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=linewidth, linestyle=linestyle))
        name = classes[label] if classes is not None and label < len(classes) else str(label)
        text = name if scores is None else f"{name} {float(scores[i]):.2f}"
        ax.text(x1, y1, text, color="black", fontsize=6, va="bottom",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 0.5, "linewidth": 0})
    return ax


def detections_figure(images, targets, preds, classes=None, title=None,
                      score_threshold: float = 0.5):
    """A matplotlib Figure: one column per image; rows ground-truth boxes, predicted boxes.

    When the predictions carry "masks" (Mask R-CNN), both rows also show the instances, one
    colour each (``overlay_instances``): the targets' "instance_masks" (or "masks") and the
    predicted masks.

    :param images: (N, 3, H, W) float in [0, 1].
    :param targets: N dicts with "boxes" (M, 4) xyxy and "labels" (M,).
    :param preds: N dicts with "boxes", "scores" and "labels" (a detector's output).
    :param score_threshold: predictions scoring below it are not drawn.
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("detections_figure needs at least one image")
    if len(targets) != n or len(preds) != n:
        raise ValueError(f"targets and preds must have one entry per image ({n}), "
                         f"got {len(targets)} and {len(preds)}")
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 0.4, 4.4), squeeze=False)
    with_masks = all("masks" in p for p in preds)
    for j in range(n):
        keep = np.asarray(preds[j]["scores"]) >= score_threshold
        true_masks = targets[j].get("instance_masks", targets[j].get("masks"))
        for i, (boxes, labels, scores, masks) in enumerate([
            (targets[j]["boxes"], targets[j]["labels"], None, true_masks),
            (np.asarray(preds[j]["boxes"])[keep], np.asarray(preds[j]["labels"])[keep],
             np.asarray(preds[j]["scores"])[keep],
             np.asarray(preds[j]["masks"])[keep][::-1] if with_masks else None),
        ]):
            ax = axes[i, j]
            picture = _as_hwc(images[j], channels_first=True)
            if with_masks and masks is not None:
                picture = overlay_instances(picture, masks)
            ax.imshow(picture, interpolation="nearest")
            draw_boxes(ax, boxes, labels, scores, classes)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("ground truth")
    axes[1, 0].set_ylabel(f"detections >= {score_threshold:g}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def read_history(path) -> list[dict]:
    """Rows of ``history.csv`` with numbers parsed (empty cells become None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items()})
    return rows


def plot_history(history, path=None):
    """Training curves: losses (left) and the val scores (right) per epoch: mIoU and pixel
    accuracy for segmentation, box mAP, mAP@50 and mAP@75 for detection (and mask mAP and
    mAP@50 for Mask R-CNN).

    :param history: a ``history.csv`` path or a list of row dicts.
    :param path: where to save the figure (None: just return it); a figure made here is then
        closed, as in ``plot_history``.
    :returns: the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    rows = read_history(history) if isinstance(history, (str, Path)) else list(history)
    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("train_loss", "val_loss"):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            left.plot(epochs, [np.nan if v is None else v for v in values], "o-", label=key)
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    for key in ("miou", "pixel_accuracy", "bbox_map", "bbox_map_50", "bbox_map_75",
                "segm_map", "segm_map_50"):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            right.plot(epochs, [np.nan if v is None else v for v in values], "o-", label=key)
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
        plt.close(fig)
    return fig


def save_mask_png(path, labels) -> Path:
    """Write a label map as a palette PNG: pixel value = label, shown in ``PALETTE`` colours."""
    from PIL import Image

    labels = _as_labels(labels).astype(np.uint8)
    image = Image.fromarray(labels)  # mode "L"; putpalette turns it into "P", values kept
    image.putpalette(PALETTE.reshape(-1).tolist())
    image.save(path)
    return Path(path)


def save_image(path, image) -> Path:
    """Save an (H, W, 3) or (3, H, W) float [0, 1] image as PNG."""
    from PIL import Image

    Image.fromarray((_as_hwc(image) * 255.0 + 0.5).astype(np.uint8)).save(path)
    return Path(path)


def plot_pr_curve(recall, precision, ax=None, label=None, ap=None, path=None):
    """A precision-recall curve: the raw zig-zag and the monotone envelope whose area is AP.

    The raw curve joins (recall, precision) after each ranked detection: it drops at every
    false positive and climbs at every true positive. The envelope, the best precision at
    that recall or beyond (``tinyseg.metrics.precision_envelope``), is drawn as steps, with
    the area under it (VOC's all-point AP) shaded.

    :param recall: (n,) recall after each ranked detection, non-decreasing: e.g.
        ``voc_eval(...)["recall"][c]``, or COCO's 101 recall points from
        ``COCOEvaluation.pr_curve(c)`` (already an envelope, so the two curves coincide).
    :param precision: (n,) precision at the same ranks.
    :param ax: a matplotlib Axes to draw into (several classes on one plot); None: a new figure.
    :param label: the curve's name in the legend (e.g. the class name).
    :param ap: an AP to write in the legend, e.g. ``voc_eval(...)["ap"][c]``.
    :param path: where to save the figure (None: just return it); a figure made here is then
        closed, as in ``plot_history``.
    :returns: the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .metrics import check_curve, precision_envelope

    recall, precision = check_curve(recall, precision)
    own_figure = ax is None
    fig, ax = plt.subplots(figsize=(4.2, 3.6)) if own_figure else (ax.figure, ax)
    name = "envelope" if label is None else str(label)
    if ap is not None:
        name += f" (AP {float(ap):.3f})"
    if recall.size:
        # steps: on (recall[k-1], recall[k]] the envelope is envelope[k], from recall 0
        steps_r = np.concatenate([[0.0], recall])
        envelope = precision_envelope(precision)
        steps_p = np.concatenate([envelope[:1], envelope])
        (line,) = ax.step(steps_r, steps_p, where="pre", linewidth=1.8, label=name)
        ax.fill_between(steps_r, steps_p, step="pre", color=line.get_color(), alpha=0.15)
        ax.plot(recall, precision, ".-", color=line.get_color(), linewidth=0.8, markersize=3,
                alpha=0.5, label=None if label is None else f"{label}, raw")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=80, bbox_inches="tight")
        if own_figure:
            plt.close(fig)
    return fig
