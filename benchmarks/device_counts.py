"""Kernel launches, device syncs and host/device copies per training step and per evaluation.

Runs on the strict simulated device (tests/strict_device.py), which counts what a GPU run would
pay for and where. No GPU is needed:

    python benchmarks/device_counts.py                 # U-Net, YOLO, Mask R-CNN
    python benchmarks/device_counts.py --models all --top 5

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="unet,yolo,maskrcnn",
                        help="comma-separated model names, or 'all'")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--top", type=int, default=3, help="call sites shown per count")
    args = parser.parse_args(argv)
    names = sorted(MODELS) if args.models == "all" else args.models.split(",")
    print(f"batch {args.batch_size}, default image size of each recipe")
    print(f"{'model':<11} {'what':<6} {'launches':>9} {'syncs':>6} {'h2d':>5} {'d2h':>5}")
    for name in names:
        for what, counts in (("step", devicecheck.step_counts(name, args.batch_size)),
                             ("eval", devicecheck.eval_counts(name, args.batch_size))):
            print(f"{name:<11} {what:<6} {counts.launches:>9} {counts.syncs:>6} "
                  f"{counts.h2d:>5} {counts.d2h:>5}")
            for site, n in counts.top("syncs", args.top):
                print(f"{'':<18} {n:>5} syncs  {site}")


if __name__ == "__main__":
    main()
