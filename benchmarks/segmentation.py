"""Quality of the segmentation models: the default recipes against their targets.

Each model is trained from scratch with its default recipe, exactly as
``tinyseg train MODEL --device cpu`` would (one fresh process per model, so the
peak memory is its own), then scored on the built-in val split. The table gives
mIoU next to the issue's target, the training time (target: 5 minutes),
seconds per epoch and peak resident memory.

A last run trains on a VOC-style folder written from the synthetic scenes, to
show that ``--data PATH`` works end to end.

    python benchmarks/segmentation.py                       # everything (~30 min on 2 cores)
    python benchmarks/segmentation.py --models unet fcn8s   # a subset
    python benchmarks/segmentation.py --voc-only

Figures depend on the machine; report them with its core count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = {
    "unet": 0.92, "segnet": 0.88, "deeplab": 0.88, "fcn8s": 0.85, "fcn16s": None, "fcn32s": None,
}
BUDGET_SECONDS = 300


def train(model: str, out: Path, extra=()) -> dict:
    """Run ``tinyseg train`` in a fresh process and read back its metrics.json."""
    command = [sys.executable, "-m", "tinyseg.cli", "train", model, "--device", "cpu",
               "--out", str(out), "--overwrite", "--no-progress", *extra]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)
    return json.loads((out / "metrics.json").read_text())


def write_voc_folder(root: Path, train_images: int, val_images: int, size: int) -> None:
    from tinyseg.data import ShapesDataset
    from tinyseg.data.voc import export_voc

    export_voc(root, {
        "train": ShapesDataset("train", num_images=train_images, size=size),
        "val": ShapesDataset("val", num_images=val_images, size=size),
    })


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--out", default="runs/benchmark", help="where the runs are written")
    parser.add_argument("--voc-only", action="store_true", help="only the VOC-folder run")
    parser.add_argument("--no-voc", action="store_true", help="skip the VOC-folder run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = []
    if not args.voc_only:
        for model in args.models:
            m = train(model, out / model)
            rows.append((model, m))
    if not args.no_voc:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "voc"
            write_voc_folder(folder, train_images=600, val_images=100, size=64)
            m = train("unet", out / "unet_voc", ["--data", str(folder), "--epochs", "8"])
            rows.append(("unet on VOC folder", m))

    print(f"\ncores: {os.cpu_count()}   budget per model: {BUDGET_SECONDS} s of training")
    header = (f"{'model':<20}{'mIoU':>7}{'target':>8}{'ok':>5}{'dice':>7}{'pix acc':>9}"
              f"{'train s':>9}{'s/epoch':>9}{'epochs':>8}{'peak MiB':>10}")
    print(header)
    print("-" * len(header))
    for name, m in rows:
        target = TARGETS.get(name)
        in_time = m["train_seconds"] <= BUDGET_SECONDS
        ok = "-" if target is None else ("yes" if m["miou"] >= target and in_time else "NO")
        target_text = "-" if target is None else f"{target:.2f}"
        peak = m.get("peak_rss_mb")
        print(f"{name:<20}{m['miou']:>7.3f}{target_text:>8}{ok:>5}{m['dice']:>7.3f}"
              f"{m['pixel_accuracy']:>9.3f}{m['train_seconds']:>9.0f}"
              f"{m['train_seconds'] / max(m['epochs'], 1):>9.1f}{m['epochs']:>8}"
              f"{(f'{peak:.0f}' if peak else '?'):>10}")
    fcn = {name: m["miou"] for name, m in rows if name.startswith("fcn")}
    if len(fcn) == 3:
        order = fcn["fcn8s"] > fcn["fcn16s"] > fcn["fcn32s"]
        print(f"\nFCN-8s > FCN-16s > FCN-32s (the paper's order): {'yes' if order else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
