"""The ``tinyseg`` command.

    tinyseg demo [--out DIR] [--steps N] [--seed S] [--device cpu|gpu]
    tinyseg homework list
    tinyseg homework build OUT [--tasks TASK ...] [--overwrite]
    tinyseg homework grade [DIR] [--verbose]

Each command is one ``_add_<command>(subparsers)`` function in ``COMMANDS``
that registers its parser and sets ``func``; a new command (train, eval,
predict) is one more such function. ``func(args)`` returns the exit status.
Usage errors and bad arguments print one line ``tinyseg: error: ...`` and
exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy

from . import homework


class CommandError(Exception):
    """A user error a command reports as one line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, no traceback
        raise CommandError(message)


# ----- homework -----


def _homework_list(args) -> int:
    root = homework.default_root()
    tasks = homework.list_tasks(root)
    if not tasks:
        print(f"no homework markers (# BEGIN SOLUTION <task>) under {root / 'tinyseg'}")
        return 0
    header = ("task", "where (file:function)", "marked tests", "needs")
    rows = [
        (
            t["task"],
            ", ".join(t["where"]),
            str(sum(t["tests"].values())),
            ", ".join(sorted(t["needs"])) or "-",
        )
        for t in tasks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    print(f"\n{len(tasks)} task(s) in {root}")
    return 0


def _homework_build(args) -> int:
    out = homework.build(args.out, args.tasks, overwrite=args.overwrite)
    chosen = json.loads((out / homework.MANIFEST).read_text())["tasks"]
    print(
        f"wrote a student copy with {len(chosen)} task(s) to {out}: {', '.join(chosen) or 'none'}"
    )
    print(f"grade it with: tinyseg homework grade {args.out}")
    return 0


def _homework_grade(args) -> int:
    rows = homework.grade(args.dir, verbose=args.verbose, timeout=args.timeout)
    return 0 if rows and all(r["passed"] == r["total"] for r in rows) else 1


def _add_homework(subparsers):
    parser = subparsers.add_parser(
        "homework",
        help="build student copies and grade them",
        description="Build student copies of tinyseg and grade them.",
    )
    commands = parser.add_subparsers(dest="homework_command", metavar="ACTION")
    commands.required = True

    p = commands.add_parser("list", help="list the homework tasks in the source tree")
    p.set_defaults(func=_homework_list)

    p = commands.add_parser("build", help="write a student copy with tasks left as stubs")
    p.add_argument("out", metavar="OUT", help="folder to write (must be empty or new)")
    p.add_argument(
        "--tasks",
        nargs="*",
        metavar="TASK",
        help="tasks to leave as stubs (default: all; --tasks with no names: a solved copy)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    p.set_defaults(func=_homework_build)

    p = commands.add_parser("grade", help="run the graded tests and print the points table")
    p.add_argument(
        "dir", nargs="?", default=".", metavar="DIR", help="the student copy (default: .)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="also print pytest's output")
    p.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    p.set_defaults(func=_homework_grade)


# ----- demo: a gradient-checked convolution learns an edge detector -----

TRUE_KERNEL = numpy.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0  # Sobel x


def _random_images(rng, n, size=24):
    """Random rectangles on a dark background plus a little noise: edges in every direction."""
    images = rng.normal(0.0, 0.05, size=(n, 1, size, size))
    for image in images:
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, size - 4, size=2)
            h, w = rng.integers(3, size // 2, size=2)
            image[0, y0 : y0 + h, x0 : x0 + w] += rng.uniform(0.5, 1.0)
    return images.astype(numpy.float32)


def _gradchecks(rng, device):
    """ts.gradcheck on F.conv2d and F.conv_transpose2d in float64 (raises GradcheckError)."""
    import tinyseg as ts
    import tinyseg.functional as F

    def t(*shape):
        return ts.tensor(rng.standard_normal(shape), requires_grad=True, device=device)

    x, w, b = t(2, 3, 5, 5), t(4, 3, 3, 3), t(4)
    ts.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [x, w, b])
    x, w, b = t(2, 3, 3, 3), t(3, 2, 3, 3), t(2)
    ts.gradcheck(
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        [x, w, b],
    )


def run_demo(out="runs/demo", steps=300, seed=0, device="cpu", log=print) -> dict:
    """Gradient-check the convolutions, then learn TRUE_KERNEL with one Conv2d.

    Writes ``out/metrics.json`` and ``out/predictions.png`` and returns the metrics.
    """
    import tinyseg as ts
    import tinyseg.functional as F
    from tinyseg import nn

    if device == "gpu" and not ts.backend.gpu_available():
        raise CommandError("--device gpu: no CuPy with a CUDA device here; use --device cpu")
    rng = numpy.random.default_rng(seed)
    _gradchecks(rng, device)
    log("gradcheck F.conv2d, F.conv_transpose2d (float64): ok")

    model = nn.Conv2d(1, 1, 3, padding=1, generator=seed).to(device)
    try:
        from tinyseg import optim

        optimizer = optim.Adam(model.parameters(), lr=0.05)
    except ImportError:  # a tree without optim.py: plain gradient descent
        optimizer = None
    true_weight = ts.tensor(TRUE_KERNEL[None, None].astype(numpy.float32), device=device)
    losses, start = [], time.perf_counter()
    for step in range(steps):
        x = ts.tensor(_random_images(rng, 16), device=device)
        with ts.no_grad():
            y = F.conv2d(x, true_weight, padding=1)
        loss = F.mse_loss(model(x), y)
        model.zero_grad()
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        else:
            with ts.no_grad():
                for p in model.parameters():
                    p.data -= 0.5 * p.grad
        losses.append(loss.item())
        if step % max(steps // 10, 1) == 0 or step == steps - 1:
            log(f"step {step:4d}  loss {losses[-1]:.3e}")
    seconds = time.perf_counter() - start

    learned = model.weight.numpy()[0, 0].astype(numpy.float64)
    shown = numpy.round(learned, 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    metrics = {
        "model": "edge_conv",
        "steps": steps,
        "seed": seed,
        "device": device,
        "gradcheck_conv2d": True,
        "gradcheck_conv_transpose2d": True,
        "initial_loss": losses[0],
        "final_loss": losses[-1],
        "kernel_max_abs_error": float(numpy.abs(learned - TRUE_KERNEL).max()),
        "train_seconds": round(seconds, 3),
    }
    log("true kernel:\n" + numpy.array2string(TRUE_KERNEL, precision=3, suppress_small=True))
    log("learned kernel:\n" + numpy.array2string(shown, precision=3, suppress_small=True))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    x = ts.tensor(_random_images(numpy.random.default_rng(seed + 1), 1), device=device)
    with ts.no_grad():
        panels = [x.numpy(), F.conv2d(x, true_weight, padding=1).numpy(), model(x).numpy()]
    _plot(out / "predictions.png", [p[0, 0] for p in panels], shown, losses)
    log(f"wrote {out / 'metrics.json'} and {out / 'predictions.png'}")
    return metrics


def _plot(path, images, learned, losses):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 6, figsize=(18, 3.2))
    titles = ["input", "true output (Sobel x)", "predicted output"]
    limit = max(abs(images[1]).max(), 1e-6)
    for ax, image, title, cmap in zip(axes, images, titles, ["gray", "RdBu", "RdBu"]):
        kwargs = {} if cmap == "gray" else {"vmin": -limit, "vmax": limit}
        ax.imshow(image, cmap=cmap, **kwargs)
        ax.set_title(title)
    for ax, kernel, title in [
        (axes[3], TRUE_KERNEL, "true kernel"),
        (axes[4], learned, "learned kernel"),
    ]:
        ax.imshow(kernel, cmap="RdBu", vmin=-0.6, vmax=0.6)
        for (i, j), v in numpy.ndenumerate(kernel):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
        ax.set_title(title)
    for ax in axes[:5]:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[5].semilogy(losses)
    axes[5].set_title("training loss (MSE)")
    axes[5].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _demo(args) -> int:
    from .gradcheck import GradcheckError

    steps = args.steps
    if steps is None:
        steps = 30 if os.environ.get("TINYSEG_FAST") == "1" else 300
    try:
        run_demo(args.out, steps=steps, seed=args.seed, device=args.device)
    except GradcheckError as err:
        print(f"tinyseg: gradient check failed:\n{err}", file=sys.stderr)
        return 1
    return 0


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_demo(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="gradient-check conv and learn an edge detector",
        description="Gradient-check F.conv2d and F.conv_transpose2d, then "
        "train one Conv2d to learn a Sobel kernel.",
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (runs/demo)")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="training steps (300; 30 when TINYSEG_FAST=1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.set_defaults(func=_demo)


# The segmentation issue adds _add_train, _add_eval, _add_predict here.
COMMANDS = [_add_demo, _add_homework]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tinyseg", description="tinyseg: segmentation from scratch in NumPy/CuPy."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 for usage and input errors)."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (
        CommandError,
        ValueError,
        OSError,
        subprocess.TimeoutExpired,
        homework.GradeError,
    ) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"tinyseg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
