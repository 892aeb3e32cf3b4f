"""Two-stage detectors: quality of the default recipes, and where a training step spends its time.

Quality. Each run trains from scratch with its default recipe, exactly as ``tinyseg train
MODEL --device cpu`` would, in a fresh process (so its peak memory is its own), and is scored
with COCO-style box mAP (and mask mAP for Mask R-CNN) on the built-in val split (200 scenes of
128x128). Targets (issue 5), within 20 minutes of training on a 2-core CPU:

* ``fasterrcnn``: bbox_map_50 >= 0.85;
* ``maskrcnn``: bbox_map_50 >= 0.85 and segm_map_50 >= 0.80;
* ``maskrcnn-fpn``: the same model and recipe with a two-level feature pyramid
  (``fpn_levels=2``: strides 4 and 8), for comparison (same targets).

Time. ``--profile`` times training iterations (batch 8 at 128x128, the default recipe) split
into stages, forward and backward separately:

* backbone: the conv-BN-ReLU stages (and the feature pyramid, if any);
* rpn: the RPN head, decoding and NMS of the proposals;
* roi_align: every RoIAlign (box head, mask head, mask targets);
* heads: the box head's FC layers and the mask head's convs;
* loss: target assignment (matching, sampling, encoding) and the five loss terms;
* optimizer: the Adam step.

The forward time of a stage is the wall time spent inside it, minus the stages nested in it.
The backward time of a stage is the time of the backward of every operation recorded while
that stage ran (the benchmark tags each tape node with its stage: see ``StageClock``).

    python benchmarks/rcnn.py                      # both runs, one at a time, then --profile
    python benchmarks/rcnn.py --jobs 2             # both runs at once, one core each
    python benchmarks/rcnn.py --runs maskrcnn      # one
    python benchmarks/rcnn.py --runs maskrcnn-fpn  # the feature-pyramid variant
    python benchmarks/rcnn.py --profile-only       # just the timing split

With ``--jobs 2`` each run gets one BLAS thread, i.e. half the machine: a run that meets its
time budget that way meets it with both cores too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import run  # noqa: E402  (its worker trains any model's default recipe)

BUDGET_SECONDS = 1200
TARGETS = {"fasterrcnn": {"bbox_map_50": 0.85},
           "maskrcnn": {"bbox_map_50": 0.85, "segm_map_50": 0.80},
           "maskrcnn-fpn": {"bbox_map_50": 0.85, "segm_map_50": 0.80}}
# name -> (model, recipe changes, extra `tinyseg train` flags), as in benchmarks/detection.py
RUNS = {"fasterrcnn": ("fasterrcnn", {}, []), "maskrcnn": ("maskrcnn", {}, []),
        "maskrcnn-fpn": ("maskrcnn", {"model_options": {"fpn_levels": 2}}, [])}
STAGES = ("backbone", "rpn", "roi_align", "heads", "loss", "optimizer", "other")


class StageClock:
    """Seconds per stage of a training step, forward and backward, from outside the model.

    Forward: ``stage(name)`` is a context that charges its wall time to ``name``, minus the
    time of stages opened inside it. Backward: while the clock is installed, every
    ``Function.apply`` tags the tape node it records with the innermost open stage and gives
    the node a timed subclass of its Function, whose ``backward`` charges its time there.
    Nothing in tinyseg changes; ``uninstall`` puts ``Function.apply`` back.
    """

    def __init__(self):
        self.forward = dict.fromkeys(STAGES, 0.0)
        self.backward = dict.fromkeys(STAGES, 0.0)
        self._open: list[list] = []  # [name, start, time of nested stages]
        self._timed_classes: dict = {}

    @contextmanager
    def stage(self, name: str):
        entry = [name, time.perf_counter(), 0.0]
        self._open.append(entry)
        try:
            yield
        finally:
            self._open.pop()
            spent = time.perf_counter() - entry[1]
            self.forward[name] += spent - entry[2]
            if self._open:
                self._open[-1][2] += spent

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)
        return timed

    def _timed(self, function_class):
        if function_class not in self._timed_classes:
            clock, plain = self, function_class.backward

            def backward(ctx, *douts):
                start = time.perf_counter()
                grads = plain(ctx, *douts)
                clock.backward[getattr(ctx, "stage", "other")] += time.perf_counter() - start
                return grads

            self._timed_classes[function_class] = type(
                function_class.__name__, (function_class,), {"backward": staticmethod(backward)})
        return self._timed_classes[function_class]

    def install(self):
        from tinyseg import autograd

        self._plain_apply = plain = autograd.Function.__dict__["apply"]
        clock = self

        def apply(cls, *args, **kwargs):
            out = plain.__func__(cls, *args, **kwargs)
            for t in out if isinstance(out, tuple) else (out,):
                node = getattr(t, "_node", None)
                if node is not None and not hasattr(node.ctx, "stage"):
                    node.ctx.stage = clock._open[-1][0] if clock._open else "other"
                    node.function = clock._timed(node.function)
            return out

        autograd.Function.apply = classmethod(apply)
        return self

    def uninstall(self):
        from tinyseg import autograd

        autograd.Function.apply = self._plain_apply


def profile(run_name: str = "maskrcnn", steps: int = 20, warmup: int = 5) -> dict:
    """Mean seconds per training step, per stage (forward, backward), on a run's recipe."""
    import tinyseg as ts
    import tinyseg.functional as F
    from tinyseg import data as datasets
    from tinyseg.engine import batch_targets, make_optimizer
    from tinyseg.models import build_model, roi_heads
    from tinyseg.recipes import default_recipe

    model_name, changes, _ = RUNS[run_name]
    recipe = default_recipe(model_name, fast=False)
    options = dict(recipe.model_options, **changes.get("model_options", {}))
    recipe = recipe.replace(model_options=options)
    ts.nn.init.manual_seed(0)
    model = build_model(model_name, num_classes=4, **recipe.model_options).train()
    optimizer = make_optimizer(model, recipe)
    scenes = datasets.ShapesDataset("train", num_images=recipe.batch_size * (steps + warmup),
                                    size=recipe.image_size)
    loader = datasets.DataLoader(scenes, batch_size=recipe.batch_size, shuffle=False)
    batches = list(loader)

    clock = StageClock()
    model.features = clock.wrap("backbone", model.features)  # with the FPN, if any
    for method in ("head_outputs", "propose"):
        setattr(model.rpn, method, clock.wrap("rpn", getattr(model.rpn, method)))
    model.rpn.compute_loss = clock.wrap("loss", model.rpn.compute_loss)
    model.roi_heads.select_training_samples = clock.wrap(
        "loss", model.roi_heads.select_training_samples)
    # the free functions are looked up in roi_heads' namespace at each call
    plain_losses = {name: getattr(roi_heads, name)
                    for name in ("fastrcnn_loss", "maskrcnn_loss", "mask_targets")}
    for name, function in plain_losses.items():
        setattr(roi_heads, name, clock.wrap("loss", function))
    model.roi_heads.box_head.forward = clock.wrap("heads", model.roi_heads.box_head.forward)
    if model.masks:
        model.roi_heads.mask_head.forward = clock.wrap("heads",
                                                       model.roi_heads.mask_head.forward)
    plain_roi_align = F.roi_align
    F.roi_align = clock.wrap("roi_align", plain_roi_align)
    clock.install()
    try:
        for i, batch in enumerate(batches):
            if i == warmup:  # the first steps warm caches and the RPN's proposals settle
                clock.forward = dict.fromkeys(STAGES, 0.0)
                clock.backward = dict.fromkeys(STAGES, 0.0)
                start = time.perf_counter()
            losses = model(ts.tensor(batch["image"]), batch_targets(batch))
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            with clock.stage("optimizer"):
                optimizer.step()
        total = (time.perf_counter() - start) / steps
    finally:
        clock.uninstall()
        F.roi_align = plain_roi_align
        for name, function in plain_losses.items():
            setattr(roi_heads, name, function)
    return {"model": run_name, "steps": steps, "seconds_per_step": total,
            "forward": {k: v / steps for k, v in clock.forward.items()},
            "backward": {k: v / steps for k, v in clock.backward.items()}}


def print_profile(p: dict) -> None:
    print(f"\n{p['model']}: {p['seconds_per_step']:.3f} s per training step (batch 8, 128x128, "
          f"mean of {p['steps']}), BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'all')}")
    print(f"{'stage':<12}{'forward s':>11}{'backward s':>12}{'total s':>9}{'share':>8}")
    counted = 0.0
    for stage in STAGES:
        f, b = p["forward"][stage], p["backward"][stage]
        counted += f + b
        share = (f + b) / p["seconds_per_step"]
        print(f"{stage:<12}{f:>11.4f}{b:>12.4f}{f + b:>9.4f}{share:>8.0%}")
    rest = p["seconds_per_step"] - counted
    print(f"{'untimed':<12}{'':>11}{'':>12}{rest:>9.4f}{rest / p['seconds_per_step']:>8.0%}"
          "   (tape walk, summing the loss, the data)")


def print_quality(rows) -> None:
    print(f"\ncores: {os.cpu_count()}   budget: {BUDGET_SECONDS} s of training")
    header = (f"{'run':<12}{'box mAP':>8}{'@50':>7}{'@75':>7}{'mask mAP':>9}{'@50':>7}"
              f"{'@75':>7}{'ok':>5}{'train s':>9}{'s/epoch':>9}{'epochs':>7}{'peak MiB':>10}")
    print(header)
    print("-" * len(header))
    for name, m in rows:
        met = all(m.get(k, -1) >= v for k, v in TARGETS[name].items())
        ok = "yes" if met and m["train_seconds"] <= BUDGET_SECONDS else "NO"
        segm = "".join(f"{m[k]:>{w}.3f}" if k in m else f"{'-':>{w}}"
                       for k, w in (("segm_map", 9), ("segm_map_50", 7), ("segm_map_75", 7)))
        peak = m.get("peak_rss_mb")
        print(f"{name:<12}{m['bbox_map']:>8.3f}{m['bbox_map_50']:>7.3f}{m['bbox_map_75']:>7.3f}"
              f"{segm}{ok:>5}{m['train_seconds']:>9.0f}{m['seconds_per_epoch']:>9.1f}"
              f"{m['epochs']:>7}{(f'{peak:.0f}' if peak else '?'):>10}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["fasterrcnn", "maskrcnn"],
                        choices=list(RUNS))
    parser.add_argument("--out", default="runs/benchmark-rcnn", help="where runs go")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (1 BLAS thread each)")
    parser.add_argument("--profile-only", action="store_true", help="only the timing split")
    parser.add_argument("--steps", type=int, default=20, help="profiled training steps")
    args = parser.parse_args(argv)
    if not args.profile_only:
        threads = 1 if args.jobs > 1 else None
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            rows = list(pool.map(
                lambda name: (name, run(name, Path(args.out), "shapes", threads, RUNS)),
                args.runs))
        print_quality(rows)
    for name in args.runs:
        print_profile(profile(name, steps=args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
