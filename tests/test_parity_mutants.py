"""The parity check catches porting bugs: each mutant, applied to a copy of the code, fails it.

Each mutant is one plausible porting mistake written into a copy of ``pipeline/`` (a text edit that
must find its original exactly once, so a mutant cannot silently stop applying when the code moves);
``python -m pipeline parity`` then runs from that copy, its float64 rounding reference and its
float32 replays included, against the committed golden file, and must exit 1. The unmutated copy
must pass (so what fails is the mutation, not the copying). The runs go two at a time, one thread each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import parity

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"

# name: (file, original text, mutated text). benchmarks/parity_study.py --sensitivity measures the
# smallest deviation of each kind that is still caught (docs/parity.md, "What it catches and what it cannot").
MUTANTS: dict[str, tuple[str, str, str]] = {
    "batch-norm ε at PyTorch's default 1e-5": (
        "nets.py", "def __init__(self, channels: int, eps: float = 1e-3)",
        "def __init__(self, channels: int, eps: float = 1e-5)"),
    "Langevin drift without the ½": (
        "langevin.py", "x_new = x - 0.5 * step_size**2 * (x / ref_sigma**2 - grad_f)",
        "x_new = x - step_size**2 * (x / ref_sigma**2 - grad_f)"),
    "x/σ instead of x/σ²": (
        "langevin.py", "(x / ref_sigma**2 - grad_f)", "(x / ref_sigma - grad_f)"),
    "learning rate decayed already in epoch 0": (
        "teaching.py", 'return float(decay["rate"]) ** (epoch / float(decay["every_epochs"]))',
        'return float(decay["rate"]) ** ((epoch + 1) / float(decay["every_epochs"]))'),
    "leaky-ReLU slope at PyTorch's default 0.01": ("nets.py", "LRELU = 0.2", "LRELU = 0.01"),
    "Adam ε placed as torch.optim.Adam does": (
        "teaching.py", 'group["eps"] = group["tf1_eps"] / math.sqrt(1.0 - group["betas"][1] ** group["tf1_t"])',
        'group["eps"] = group["tf1_eps"]'),
    "3×3/2 transposed conv with symmetric padding": (
        "nets.py",
        "y = F.conv_transpose2d(x.flip(2, 3), self.weight.flip(2, 3), self.bias, s, tuple(bottom), "
        "output_padding=extra)\n        return y.flip(2, 3)",
        "return F.conv_transpose2d(x, self.weight, self.bias, s, tuple(bottom), output_padding=extra)"),
    "KL weight ignored": ("teaching.py", "return rec + kl_weight * kl, rec, kl", "return rec + kl, rec, kl"),
    "VAE learns from the proposals x̃, not the revisions x̂": (
        "teaching.py", 'vae_loss(enc, dec, x_hat, cfg["kl_weight"]', 'vae_loss(enc, dec, x_tilde, cfg["kl_weight"]'),
}


def _copy(dest: Path, mutant: tuple[str, str, str] | None) -> Path:
    shutil.copytree(ROOT / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    if mutant is not None:
        file, old, new = mutant
        path = dest / "pipeline" / file
        text = path.read_text()
        assert text.count(old) == 1, f"mutant no longer applies: {old!r} occurs {text.count(old)} times in {file}"
        path.write_text(text.replace(old, new))
    return dest


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Run the parity CLI from the unmutated copy and from every mutant's copy, two processes at a time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    jobs = {"unmutated": None, **MUTANTS}
    dirs = {name: _copy(tmp_path_factory.mktemp("mutant"), m) for name, m in jobs.items()}
    cmd = [sys.executable, "-m", "pipeline", "parity", "--golden", str(GOLDEN)]
    done: dict[str, subprocess.CompletedProcess] = {}
    pending = list(jobs)
    running: dict[str, subprocess.Popen] = {}
    while pending or running:
        while pending and len(running) < 2:
            name = pending.pop(0)
            running[name] = subprocess.Popen(cmd, cwd=dirs[name], env={**env, "PYTHONPATH": str(dirs[name])},
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        name = next(iter(running))
        proc = running.pop(name)
        out, err = proc.communicate(timeout=900)
        done[name] = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    # The copies, not the installed tree, are what ran.
    where = subprocess.run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], cwd=dirs["unmutated"],
                           env={**env, "PYTHONPATH": str(dirs["unmutated"])}, capture_output=True, text=True)
    assert where.stdout.strip() == str(dirs["unmutated"] / "pipeline" / "__init__.py"), where
    return done


def test_unmutated_copy_passes(outcomes):
    res = outcomes["unmutated"]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "parity ok" in res.stdout


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_fails_parity(outcomes, name):
    res = outcomes[name]
    assert res.returncode == 1, f"{name}: parity did not fail\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"
    m = re.search(r"PARITY FAILED: (\d+) of \d+ quantities.*?= ([\d.e+-]+|inf) × its rounding", res.stderr, re.S)
    assert m, res.stderr[-2000:]
    # Caught well beyond the limit, not by a hair that a rounding difference could undo.
    assert float(m[2]) > 3 * parity.K, res.stderr
