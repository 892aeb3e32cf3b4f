"""How fast is tinyseg's conv2d? im2col + matmul against PyTorch CPU and a bare GEMM.

Times conv2d forward and forward+backward in float32 at three U-Net-like
shapes (3x3 kernels, padding 1) and prints, per shape:

* median milliseconds of tinyseg's forward and forward+backward,
* PyTorch CPU's forward+backward (if torch imports), with the same thread count,
* the ratio tinyseg / torch (target <= 2.0),
* the forward's GFLOP/s as a percentage of one bare matmul of the same FLOPs,
  (C_out, C_in*9) @ (C_in*9, N*H*W) (target >= 60 %): the cost of im2col and
  of the layout, against the GEMM it cannot avoid;

then the peak memory that tracemalloc sees (numpy allocations) during one
forward+backward at the largest shape.

Run:  python benchmarks/conv.py --repeats 10 --threads 2
On a busy shared machine, ``--threads 1 --clock cpu`` gives steadier ratios.
The thread count applies to NumPy's BLAS only if set before numpy loads, so
this script sets the usual environment variables before importing numpy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

SHAPES = [  # (N, C_in, H, W, C_out)
    (8, 16, 64, 64, 16),
    (8, 64, 64, 64, 64),
    (8, 128, 32, 32, 128),
]
TARGET_RATIO = 2.0
TARGET_GEMM_SHARE = 60.0


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS / torch threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (the figure to report); cpu: this process's CPU time, "
        "steadier on a busy shared machine (use with --threads 1)",
    )
    return parser.parse_args()


def _set_threads(threads):
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


_CLOCK = time.perf_counter


def _median_ms(fns, repeats):
    """Median wall time of each function in ms. The functions take turns, run after
    run, so that a busy machine slows them all alike and their ratios stay fair."""
    for fn in fns:
        fn()  # warm-up: first-touch page faults, BLAS thread start
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = _CLOCK()
            fn()
            bucket.append(_CLOCK() - start)
    return [1e3 * statistics.median(t) for t in times]


def _bench_shape(shape, repeats, numpy, torch):
    """Median ms of tinyseg fwd, fwd+bwd, torch fwd+bwd and the bare GEMM at one shape."""
    from tinyseg.ops.conv import conv2d_backward, conv2d_forward

    N, C_in, H, W, C_out = shape
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((N, C_in, H, W), dtype=numpy.float32)
    w = rng.standard_normal((C_out, C_in, 3, 3), dtype=numpy.float32) * 0.05
    b = numpy.zeros(C_out, numpy.float32)
    dout = rng.standard_normal((N, C_out, H, W), dtype=numpy.float32)

    def forward():
        return conv2d_forward(x, w, b, 1, 1)

    def forward_backward():
        out, cache = conv2d_forward(x, w, b, 1, 1)
        return conv2d_backward(dout, cache)

    a = rng.standard_normal((C_out, C_in * 9), dtype=numpy.float32)
    cols = rng.standard_normal((C_in * 9, N * H * W), dtype=numpy.float32)

    def gemm():
        return a @ cols

    fns = [forward, forward_backward, gemm]
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(True)
        tw = torch.from_numpy(w).requires_grad_(True)
        tb = torch.from_numpy(b).requires_grad_(True)
        tdout = torch.from_numpy(dout)

        def torch_fb():
            out = torch.nn.functional.conv2d(tx, tw, tb, 1, 1)
            tx.grad = tw.grad = tb.grad = None
            out.backward(tdout)

        fns.append(torch_fb)
    t_fwd, t_fb, t_gemm, *t_torch = _median_ms(fns, repeats)
    t_torch = t_torch[0] if t_torch else float("nan")
    return t_fwd, t_fb, t_torch, t_gemm


def _peak_memory_mib(shape, numpy):
    """Peak bytes tracemalloc sees (it counts numpy's allocations) in one fwd+bwd."""
    import tracemalloc

    from tinyseg.ops.conv import conv2d_backward, conv2d_forward

    N, C_in, H, W, C_out = shape
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((N, C_in, H, W), dtype=numpy.float32)
    w = rng.standard_normal((C_out, C_in, 3, 3), dtype=numpy.float32)
    b = numpy.zeros(C_out, numpy.float32)
    dout = rng.standard_normal((N, C_out, H, W), dtype=numpy.float32)
    tracemalloc.start()
    out, cache = conv2d_forward(x, w, b, 1, 1)
    grads = conv2d_backward(dout, cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del out, cache, grads
    return peak / 2**20, x.nbytes / 2**20


def main():
    global _CLOCK
    args = _parse()
    _set_threads(args.threads)
    _CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    import numpy  # after the thread variables

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and args.threads is not None:
        torch.set_num_threads(args.threads)

    threads = args.threads or "default"
    targets = (
        f"targets: fwd+bwd <= {TARGET_RATIO:.1f}x torch, "
        f"forward >= {TARGET_GEMM_SHARE:.0f}% of the GEMM's GFLOP/s"
    )
    print(
        f"conv2d 3x3 pad 1, float32, median of {args.repeats}, threads={threads}, "
        f"{args.clock} clock"
    )
    print(targets)
    header = (
        f"{'shape (N,Cin,H,W)->Cout':>24} {'fwd ms':>8} {'fwd+bwd':>8} {'torch':>8} "
        f"{'ratio':>6} {'GEMM ms':>8} {'fwd GF/s':>9} {'% GEMM':>7}"
    )
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        N, C_in, H, W, C_out = shape
        t_fwd, t_fb, t_torch, t_gemm = _bench_shape(shape, args.repeats, numpy, torch)
        gflops = 2.0 * C_out * C_in * 9 * N * H * W / t_fwd / 1e6
        share = 100.0 * t_gemm / t_fwd  # same FLOPs, so the time ratio is the GFLOP/s ratio
        name = f"({N},{C_in},{H},{W})->{C_out}"
        print(
            f"{name:>24} {t_fwd:8.1f} {t_fb:8.1f} {t_torch:8.1f} {t_fb / t_torch:6.2f} "
            f"{t_gemm:8.1f} {gflops:9.1f} {share:6.0f}%"
        )

    largest = max(SHAPES, key=lambda s: s[0] * s[1] * s[2] * s[3] * s[4])
    peak, x_mib = _peak_memory_mib(largest, numpy)
    N, C_in, H, W, C_out = largest
    print(
        f"\npeak memory (tracemalloc) of one fwd+bwd at ({N},{C_in},{H},{W})->{C_out}: "
        f"{peak:.0f} MiB; x is {x_mib:.0f} MiB, x_cols alone {9 * x_mib:.0f} MiB"
    )
    print(targets)


if __name__ == "__main__":
    main()
