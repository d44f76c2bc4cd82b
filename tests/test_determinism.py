"""Same seed, same bytes: the digits chain run twice in two directories, and DVC push/pull round trips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
OUTPUTS = ["data/prepared/digits.npz", "models/digits/coopvaebm/seed0.pt", "results/digits/coopvaebm/seed0/samples.npz",
           "results/digits/coopvaebm/seed0/metrics.json"]


def tiny_params(root: Path) -> Path:
    """params.yaml with a few iterations of every digits stage up to score."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    d = params["datasets"]["digits"]
    d["classifier"].update(epochs=2, min_accuracy=0.1)
    m = d["methods"]["coopvaebm"]
    m.update(epochs=1, n_chains=16, log_every=5, checkpoint_every=5)
    m["langevin"].update(train_steps=2, test_steps=3)
    d["sample"]["n_samples"] = 40
    d["score"].update(kid_subsets=5, kid_subset_size=32)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def env() -> dict[str, str]:
    # One thread each: float reductions depend on the thread count, and both chains run side by side.
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "PIPELINE_PROGRESS": "0",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def chain(root: Path) -> subprocess.Popen:
    """prepare, classifier, train, sample, score of digits (CoopVAEBM) in ``root``, one process per stage."""
    tiny_params(root)
    py = f"{sys.executable} -m pipeline"
    method = "--dataset digits --method coopvaebm --params params.yaml"
    stages = [f"{py} prepare --dataset digits --params params.yaml",
              f"{py} classifier --dataset digits --params params.yaml",
              f"{py} train {method}", f"{py} sample {method}", f"{py} score {method}"]
    return subprocess.Popen(" && ".join(stages), shell=True, cwd=root, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_digits_chain_is_byte_identical_in_two_directories(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    for r in roots:
        r.mkdir()
    procs = [chain(r) for r in roots]  # side by side: 2 cores, one thread each
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-4000:]
    for f in OUTPUTS:
        a, b = (r / f for r in roots)
        assert a.is_file(), f
        assert a.read_bytes() == b.read_bytes(), f"{f} differs between two runs with the same seed"


def files(root: Path, *dirs: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for d in dirs for p in sorted((root / d).rglob("*"))
            if p.is_file()}


def dvc(root: Path, *args: str) -> str:
    proc = subprocess.run(["dvc", *args], cwd=root, env=env(), text=True, capture_output=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_dvc_push_then_pull_restores_data_and_models(tmp_path):
    from test_workflows import DIGITS, tiny_copy

    root = tiny_copy(tmp_path / "repo")
    dvc(root, "repro", *DIGITS)
    before = files(root, "data", "models")
    assert {"data/prepared/digits.npz", "models/digits/coopvaebm/seed0.pt", "models/digits/classifier.pt"} <= set(before)

    dvc(root, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    # The digits stages and what they depend on: the paper datasets' stages have no outputs here.
    dvc(root, "push", *DIGITS, "--with-deps")
    shutil.rmtree(root / "data")
    shutil.rmtree(root / "models")
    dvc(root, "pull", *DIGITS, "--with-deps")
    assert files(root, "data", "models") == before
    assert "up to date" in dvc(root, "status", *DIGITS, "--with-deps")
