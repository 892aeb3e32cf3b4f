"""Quality of the detectors: the default recipes against their targets, and focal loss vs BCE.

Each run trains from scratch with a default recipe, exactly as ``tinyseg train MODEL --device
cpu`` would, in a fresh process (so its peak memory is its own), and is scored with COCO-style
box mAP on the built-in val split (200 scenes of 128x128). The runs:

* ``yolo``: YOLO v1 (target: bbox_map_50 >= 0.85 within 10 minutes of training);
* ``retinanet``: the one-stage anchor detector with sigmoid focal loss (same target);
* ``retinanet-bce``: the same detector, recipe and budget with plain BCE instead of focal loss;
* ``retinanet-coco``: RetinaNet on a COCO-style folder written from the synthetic scenes
  (600 train, 100 val; ``--data PATH --epochs 10``), to show that detection reads folders on
  disk end to end.

    python benchmarks/detection.py                        # everything, one run at a time
    python benchmarks/detection.py --runs yolo retinanet  # a subset
    python benchmarks/detection.py --jobs 2               # two runs at once, one core each

With ``--jobs 2`` each run gets one BLAS thread, i.e. half the machine: a run that meets its
time budget that way meets it with both cores too. Figures depend on the machine; report them
with its core count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TARGET_MAP_50 = 0.85
BUDGET_SECONDS = 600

# name -> (model, recipe changes, extra `tinyseg train` flags)
RUNS = {
    "yolo": ("yolo", {}, []),
    "retinanet": ("retinanet", {}, []),
    "retinanet-bce": ("retinanet", {"model_options": {"cls_loss": "bce"}}, []),
    "retinanet-coco": ("retinanet", {}, ["--epochs", "10"]),
}
TARGETS = {"yolo": TARGET_MAP_50, "retinanet": TARGET_MAP_50}


def train_one(model: str, changes: dict, out: Path, data: str, extra: list[str]) -> None:
    """Train in this process: the default recipe with ``changes`` (used by the worker mode)."""
    from tinyseg.engine import train_model
    from tinyseg.recipes import default_recipe

    recipe = default_recipe(model, fast=False)
    options = dict(recipe.model_options, **changes.pop("model_options", {}))
    recipe = recipe.replace(model_options=options, **changes)
    if "--epochs" in extra:
        recipe = recipe.replace(epochs=int(extra[extra.index("--epochs") + 1]))
    train_model(recipe, data=data, device="cpu", out_dir=out, progress=False, overwrite=True)


def run(name: str, out: Path, data: str, threads: int | None, runs=None,
        script: str = __file__) -> dict:
    """Run ``name`` of ``runs`` (default ``RUNS``) in a fresh process, as ``script --worker``,
    and read back its metrics.json. ``benchmarks/rcnn.py`` runs its own table through it."""
    model, changes, extra = (RUNS if runs is None else runs)[name]
    env = dict(os.environ)
    if threads is not None:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
    command = [sys.executable, script, "--worker", model, json.dumps(changes),
               str(out / name), data, *extra]
    print("$ run", name, flush=True)
    log = (out / f"{name}.log")
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        subprocess.run(command, check=True, env=env, stdout=f, stderr=subprocess.STDOUT)
    return json.loads((out / name / "metrics.json").read_text())


def write_coco_folder(root: Path, train_images: int, val_images: int, size: int) -> None:
    from tinyseg.data import ShapesDataset
    from tinyseg.data.coco import export_coco

    export_coco(root, {
        "train": ShapesDataset("train", num_images=train_images, size=size),
        "val": ShapesDataset("val", num_images=val_images, size=size),
    })


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        model, changes, out, data, *extra = argv[1:]
        train_one(model, json.loads(changes), Path(out), data, extra)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default="runs/benchmark-detection", help="where runs go")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (1 BLAS thread each)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    threads = 1 if args.jobs > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        coco = Path(tmp) / "coco"
        if "retinanet-coco" in args.runs:
            write_coco_folder(coco, train_images=600, val_images=100, size=128)

        def job(name):
            return name, run(name, out, str(coco) if name.endswith("-coco") else "shapes",
                             threads)

        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            rows = list(pool.map(job, args.runs))

    print(f"\ncores: {os.cpu_count()}   jobs at once: {args.jobs}   "
          f"budget: {BUDGET_SECONDS} s of training, target bbox_map_50 >= {TARGET_MAP_50}")
    header = (f"{'run':<15}{'mAP':>7}{'mAP@50':>8}{'mAP@75':>8}{'ok':>5}{'train s':>9}"
              f"{'s/epoch':>9}{'epochs':>8}{'peak MiB':>10}")
    print(header)
    print("-" * len(header))
    for name, m in rows:
        target = TARGETS.get(name)
        in_time = m["train_seconds"] <= BUDGET_SECONDS
        ok = "-" if target is None else ("yes" if m["bbox_map_50"] >= target and in_time
                                          else "NO")
        peak = m.get("peak_rss_mb")
        print(f"{name:<15}{m['bbox_map']:>7.3f}{m['bbox_map_50']:>8.3f}{m['bbox_map_75']:>8.3f}"
              f"{ok:>5}{m['train_seconds']:>9.0f}{m['seconds_per_epoch']:>9.1f}{m['epochs']:>8}"
              f"{(f'{peak:.0f}' if peak else '?'):>10}")
    found = dict(rows)
    if "retinanet" in found and "retinanet-bce" in found:
        focal, bce = found["retinanet"], found["retinanet-bce"]
        print(f"\nfocal loss vs BCE, same detector and budget: mAP@50 {focal['bbox_map_50']:.3f} "
              f"vs {bce['bbox_map_50']:.3f}, mAP {focal['bbox_map']:.3f} vs {bce['bbox_map']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
