"""The CIFAR-10 chain on format fixtures, tiny, on one device: prepare → reference → train → sample → score.

Used by benchmarks/gpu_check.sh. The inputs are the test suite's own fixture writers: a
cifar-10-python.tar.gz in the real format (tests/test_datasets.py), Inception weight files in the
real formats with random weights (pipeline.inception.write_random_weights) and the tiny CIFAR-10
parameters of tests/test_paper_pipeline.py. The scores mean nothing; the point is that every stage's
real code runs on the device. Prints one line per stage with its wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], required=True)
    args = p.parse_args(argv)

    import torch

    from pipeline.__main__ import main as pipeline
    from pipeline.inception import write_random_weights
    from test_datasets import write_cifar
    from test_paper_pipeline import tiny_cifar_params

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        raw, weights = work / "raw", work / "inception"
        write_cifar(raw)
        write_random_weights(weights)
        table = {"cifar-10-python.tar.gz": hashlib.md5((raw / "cifar-10-python.tar.gz").read_bytes()).hexdigest()}
        # The fixture archive is not the published file: register its MD5 through the test override.
        (work / "checksums.json").write_text(json.dumps(table))
        os.environ["PIPELINE_TEST_CHECKSUMS"] = str(work / "checksums.json")
        params = tiny_cifar_params(work, raw, weights)
        os.chdir(work)
        common = ["--params", str(params), "--no-progress"]
        dev = ["--device", args.device]
        stages = [["prepare", "--dataset", "cifar10"], ["reference", "--dataset", "cifar10"]]
        for m in ("coopvaebm", "vae"):
            stages += [["train", "--dataset", "cifar10", "--method", m, *dev],
                       ["sample", "--dataset", "cifar10", "--method", m, *dev],
                       ["score", "--dataset", "cifar10", "--method", m]]
        stages += [["score-real", "--dataset", "cifar10"], ["tables", "--dataset", "cifar10"]]
        for stage in stages:
            t0 = time.perf_counter()
            rc = pipeline([*stage, *common])
            print(f"chain {' '.join(stage)}: exit {rc}, {time.perf_counter() - t0:.1f} s", flush=True)
            if rc != 0:
                return rc
        full = json.loads((work / "results/cifar10/coopvaebm/seed0/metrics.json").read_text())
        for name in full["protocols"]:
            m = full[name]
            print(f"chain ok on {args.device}: coopvaebm fid {m['fid']:.2f} under protocol {name} (random Inception "
                  f"weights: meaningless), {m['n_samples']} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
