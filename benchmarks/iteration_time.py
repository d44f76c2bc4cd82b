"""Measured time of one training iteration at a dataset's configuration, and the projected wall time.

Random data of the configured shape (no dataset needed), the real nets and the real ``teaching_step``
/ ``vae_step`` from ``pipeline.teaching``. Prints the median seconds per iteration over ``--repeats``
timed iterations after ``--warmup`` untimed ones, and that times the run's iterations
(epochs × (training images // batch size)) for each method.

    python benchmarks/iteration_time.py --dataset cifar10 [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from pipeline.config import load_params
from pipeline.nets import build_models
from pipeline.teaching import STEPS, make_trainer

# Training-split sizes of the prepared datasets (pipeline/data/*.py): CIFAR-10 data_batch_1..5,
# SVHN train_32x32.mat, CelebA partition 0.
TRAIN_IMAGES = {"cifar10": 50_000, "svhn": 73_257, "celeba": 162_770}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_iteration(dataset: str, method: str, params: dict, device: torch.device, warmup: int,
                          repeats: int) -> float:
    """Median wall seconds of one ``method`` iteration on random data of ``dataset``'s shape."""
    dcfg = params["datasets"][dataset]
    mcfg = dcfg["methods"][method]
    size, channels = dcfg["prepare"]["resolution"], 3
    torch.manual_seed(0)
    models = {k: m.to(device, memory_format=torch.channels_last)
              for k, m in build_models(channels, size, dcfg["nets"]).items()}
    if method == "vae":
        del models["ebm"]
    trainer = make_trainer(method, models, mcfg, device)
    x = (torch.rand(mcfg["batch_size"], channels, size, size, device=device) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    step, z_dim = STEPS[method], dcfg["nets"]["z_dim"]
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        t0 = time.perf_counter()
        step(trainer, x, mcfg, z_dim)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10", choices=sorted(TRAIN_IMAGES))
    parser.add_argument("--methods", nargs="+", default=["coopvaebm", "vae"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params, device = load_params(args.params), torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    for method in args.methods:
        mcfg = params["datasets"][args.dataset]["methods"][method]
        iters = mcfg["epochs"] * (TRAIN_IMAGES[args.dataset] // mcfg["batch_size"])
        s = seconds_per_iteration(args.dataset, method, params, device, args.warmup, args.repeats)
        print(f"{args.dataset} {method}: {s:.3f} s/iteration (median of {args.repeats}); {iters:,} iterations "
              f"({mcfg['epochs']} epochs) -> {s * iters / 3600:,.1f} h = {s * iters / 86400:,.1f} days")


if __name__ == "__main__":
    main()
