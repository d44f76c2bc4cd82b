"""CPU seconds of each EBM convolution at the paper's batch: forward, input gradient, weight gradient, leaky ReLU.

The Langevin revision is 15 × (EBM forward + input-gradient backward) of 900 images; this times each layer's
kernels alone (oneDNN through ``torch.ops.aten.convolution_backward`` with the output mask the revision
uses) in channels-last (NHWC, what the pipeline runs) and contiguous (NCHW) layouts, in thread CPU seconds
(min of 3 after 1 warm-up), so it can be run on a shared machine:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ebm_layers.py [--formats NHWC NCHW] [--batch 900]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.cpualloc import reuse_freed_memory  # noqa: E402

# The descriptor of nets type cifar at 32×32, width 64 (pipeline/nets.py build_ebm): cin, cout, k, stride, pad, side
LAYERS = [(3, 64, 3, 1, 1, 32), (64, 128, 4, 2, 1, 32), (128, 256, 4, 2, 1, 16), (256, 256, 4, 2, 1, 8),
          (256, 1, 4, 1, 0, 4)]
FORMATS = {"NHWC": torch.channels_last, "NCHW": torch.contiguous_format}


def cpu_seconds(fn, repeats: int = 3) -> float:
    """Min thread CPU seconds of ``repeats`` calls after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", nargs="+", default=["NHWC", "NCHW"], choices=sorted(FORMATS))
    p.add_argument("--batch", type=int, default=900)
    args = p.parse_args(argv)
    print(f"freed memory kept (pipeline/cpualloc.py): {reuse_freed_memory()}, {torch.get_num_threads()} thread(s)")
    print("| layout | layer | forward s | input grad s | weight grad s | leaky ReLU s | forward GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.formats:
        fmt, total = FORMATS[name], [0.0] * 4
        for cin, cout, k, s, pad, side in LAYERS:
            x = torch.randn(args.batch, cin, side, side).contiguous(memory_format=fmt)
            w = (torch.randn(cout, cin, k, k) * 0.01).contiguous(memory_format=fmt)
            b = torch.zeros(cout)
            y = F.conv2d(x, w, b, s, pad)
            g = torch.randn_like(y)

            def backward(mask, g=g, x=x, w=w, cout=cout, s=s, pad=pad):
                return torch.ops.aten.convolution_backward(g, x, w, [cout], [s, s], [pad, pad], [1, 1], False,
                                                           [0, 0], 1, mask)

            t = [cpu_seconds(lambda: F.conv2d(x, w, b, s, pad)), cpu_seconds(lambda: backward([True, False, False])),
                 cpu_seconds(lambda: backward([False, True, True])), cpu_seconds(lambda: F.leaky_relu(y, 0.2))]
            flops = 2 * args.batch * cout * y.shape[2] * y.shape[3] * cin * k * k
            print(f"| {name} | {cin}→{cout} {k}×{k}/{s} | {t[0]:.3f} | {t[1]:.3f} | {t[2]:.3f} | {t[3]:.3f} | "
                  f"{flops / t[0] / 1e9:.0f} |")
            total = [a + c for a, c in zip(total, t)]
        print(f"| {name} | all five | {total[0]:.3f} | {total[1]:.3f} | {total[2]:.3f} | {total[3]:.3f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
