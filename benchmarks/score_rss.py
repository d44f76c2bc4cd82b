"""Throughput and peak memory of pipeline.inception's streaming feature extraction, offline.

Writes N random uint8 32×32×3 images to a memmap, creates randomly initialised Inception weight files in the
real formats (``write_random_weights``: the numbers mean nothing, the cost is real), extracts all features on
CPU, scores the first half against the second, and prints images/s and peak RSS.

    .venv/bin/python benchmarks/score_rss.py --n 10000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.inception import extract, scores, write_random_weights  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="number of images (default 10,000)")
    p.add_argument("--batch-size", type=int, default=100, help="extraction batch size (default 100)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size, capped at N/2 (default 1000)")
    p.add_argument("--workdir", type=Path, default=None, help="memmap and weights go here (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p.parse_args(argv)


def _memmap_images(path: Path, n: int, seed: int) -> np.memmap:
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=(n, 32, 32, 3))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 1000):  # chunked, so the writer itself stays small
        stop = min(start + 1000, n)
        mm[start:stop] = rng.integers(0, 256, (stop - start, 32, 32, 3), dtype=np.uint8)
    mm.flush()
    del mm
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 32, 32, 3))


def _peak_rss_gb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Extract, score and print the figures."""
    images = _memmap_images(workdir / "images.u8", args.n, args.seed)
    weights = write_random_weights(workdir / "weights", seed=args.seed)
    t0 = time.perf_counter()
    feats = extract(images, weights, batch_size=args.batch_size, device=torch.device("cpu"), progress=args.progress)
    t_extract = time.perf_counter() - t0
    half = args.n // 2
    t1 = time.perf_counter()
    result = scores({k: v[:half] for k, v in feats.items()}, {k: v[half:] for k, v in feats.items()},
                    kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size)
    t_scores = time.perf_counter() - t1
    for k, v in result.items():
        print(f"{k}: {v:.6g}")
    print(f"images: {args.n}  batch size: {args.batch_size}  torch threads: {torch.get_num_threads()}")
    print(f"extract: {t_extract:.1f} s = {args.n / t_extract:.2f} images/s (all four feature kinds, one pass)")
    print(f"scores: {t_scores:.1f} s")
    print(f"peak RSS: {_peak_rss_gb():.2f} GB")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parse(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="score-rss-") as tmp:
            run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
