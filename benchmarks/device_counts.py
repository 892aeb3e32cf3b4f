"""Kernel launches, device syncs and host/device copies per training step and per evaluation.

Runs on the strict simulated device (tests/strict_device.py), which counts what a GPU run would
pay for and where. No GPU is needed:

    python benchmarks/device_counts.py                 # U-Net, YOLO, Mask R-CNN
    python benchmarks/device_counts.py --models all --top 5
    python benchmarks/device_counts.py --plot docs/images/gpu_syncs.png   # the docs' figure

A sync (a host read of a device value) stalls the GPU's queue until everything before it has
run, so its count matters more than the launches'. See docs/gpu.md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import strict_device  # noqa: E402

strict_device.install()

import devicecheck  # noqa: E402

from tinyseg.models import MODELS  # noqa: E402

# The record this work started from: the same command at batch 4 on commit 8b09d6b, before the
# device path was shaped (NMS swept on the device, bincount scatters, per-term loss reads,
# per-parameter optimiser updates). Printed next to today's counts; not re-measurable from here.
BEFORE = {  # model: (step syncs, eval syncs, step launches)
    "unet": (3, 10, 2024), "segnet": (12, 19, 1635), "yolo": (33, 789, 1138),
    "retinanet": (15, 20, 1571), "fasterrcnn": (627, 998, 4477), "maskrcnn": (658, 1017, 5243),
}


def plot(rows, path):
    """Bar charts of step syncs, eval syncs and step launches: BEFORE against now."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in BEFORE if n in rows]
    titles = ["device syncs per training step", "device syncs per evaluation batch",
              "kernel launches per training step"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for k, (ax, title) in enumerate(zip(axes, titles)):
        before = [BEFORE[n][k] for n in names]
        now = [rows[n][k] for n in names]
        x = range(len(names))
        for offset, values, label, colour in ((-0.2, before, "before (8b09d6b)", "#999999"),
                                              (0.2, now, "now", "#0072b2")):
            bars = ax.bar([i + offset for i in x], values, 0.4, label=label, color=colour)
            ax.bar_label(bars, fontsize=10)
        if k < 2:  # syncs span three decades; launches one
            ax.set_yscale("log")
        ax.margins(y=0.12)
        ax.set_xticks(list(x), names, rotation=20, fontsize=12)
        ax.set_title(f"{title} (batch 4)", fontsize=13)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=12, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="unet,yolo,maskrcnn",
                        help="comma-separated model names, or 'all'")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--top", type=int, default=3, help="call sites shown per count")
    parser.add_argument("--plot", metavar="PNG",
                        help="also draw the before/now figure of docs/gpu.md (batch 4)")
    args = parser.parse_args(argv)
    names = sorted(MODELS) if args.models == "all" else args.models.split(",")
    if args.plot:
        names = list(BEFORE)
        if args.batch_size != 4:
            parser.error("--plot compares with the batch-4 record: use --batch-size 4")
    rows = {}
    print(f"batch {args.batch_size}, default image size of each recipe")
    print(f"{'model':<11} {'what':<6} {'launches':>9} {'syncs':>6} {'h2d':>5} {'d2h':>5}")
    for name in names:
        step = devicecheck.step_counts(name, args.batch_size)
        evaluation = devicecheck.eval_counts(name, args.batch_size)
        rows[name] = (step.syncs, evaluation.syncs, step.launches)
        for what, counts in (("step", step), ("eval", evaluation)):
            print(f"{name:<11} {what:<6} {counts.launches:>9} {counts.syncs:>6} "
                  f"{counts.h2d:>5} {counts.d2h:>5}")
            for site, n in counts.top("syncs", args.top):
                print(f"{'':<18} {n:>5} syncs  {site}")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
