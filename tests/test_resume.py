"""Crash-safe, resumable training: resume state, bit-identical resume (in-process, after SIGKILL, through
Snakemake and DVC), refusal of another config's state, and the divergence guard."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import pytest
import torch
import yaml

from pipeline import paths, resume
from pipeline.stages.train import train as train_stage
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)
CKPT = paths.checkpoint("digits", "coopvaebm", 0)
STATE = paths.train_state("digits", "coopvaebm", 0)
N_BATCHES = 19  # 1,257 digits training images // batch_size 64
# Tiny CoopVAEBM: 3 epochs of 19 iterations, a resume state every 5 iterations.
TINY = {"epochs": 3, "n_chains": 16, "log_every": 5, "checkpoint_every": 5}
TINY_LANGEVIN = {"train_steps": 2, "test_steps": 3}
TINY_VAE = {"epochs": 2, "log_every": 5, "checkpoint_every": 5}


def shrink(params: dict, which: str = "coopvaebm", **overrides: object) -> dict:
    """The tiny training settings on the digits method sections of ``params``, plus ``overrides`` on ``which``."""
    methods = params["datasets"]["digits"]["methods"]
    methods["coopvaebm"].update(TINY)
    methods["coopvaebm"]["langevin"].update(TINY_LANGEVIN)
    methods["vae"].update(TINY_VAE)
    methods[which].update(overrides)
    return params


def write_params(root: Path, **coopvaebm: object) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(shrink(yaml.safe_load((ROOT / "params.yaml").read_text()), **coopvaebm),
                                   sort_keys=False))
    return path


def env(threads: int = 1) -> dict[str, str]:
    """Subprocess environment: this checkout importable, one thread (what ``snakemake --cores 1`` sets)."""
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "PIPELINE_PROGRESS": "0",
            "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}


def cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=root, env=env(), text=True,
                          capture_output=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


TRAIN = ["train", "--dataset", "digits", "--method", "coopvaebm", "--params", "params.yaml"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """data/prepared/digits.* made once by the real prepare stage; copied into each test's directory."""
    root = tmp_path_factory.mktemp("prepared")
    write_params(root)
    cli(root, "prepare", "--dataset", "digits", "--params", "params.yaml")
    return root / "data"


@pytest.fixture
def workdir(tmp_path, prepared, monkeypatch) -> Iterator[Path]:
    """A directory with the prepared digits and tiny params, as cwd; torch on one thread like the CLI runs
    (several OpenMP threads on a busy 2-core machine slow tiny nets down many times)."""
    shutil.copytree(prepared, tmp_path / "data")
    write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {f"{net}.{k}": v for net, sd in ckpt["models"].items() for k, v in sd.items()}


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"tensors differ after resuming: {different}"


class Interrupt(Exception):
    """Stands in for a kill right after a state was saved."""


def interrupt_at(monkeypatch, iteration: int) -> None:
    real = resume.save_state

    def save_then_stop(path, fp, trainer, it, curves):
        real(path, fp, trainer, it, curves)
        if it == iteration:
            raise Interrupt

    monkeypatch.setattr(resume, "save_state", save_then_stop)


def train_in_process(which: str = "coopvaebm", **overrides: object) -> None:
    params = shrink(load_params("params.yaml"), which, **overrides)
    train_stage(params, "digits", which, 0, "cpu", progress=False)


# --------------------------------------------------------------------------------------------------
# Units and in-process runs.

def test_rng_state_roundtrip_draws_nothing():
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.standard_normal()  # a cached Gaussian must come back too
    before = resume.rng_state()
    assert torch.equal(resume.rng_state()["torch"], before["torch"])  # reading it consumed nothing
    first = (torch.rand(3), np.random.standard_normal(3), random.random())
    resume.restore_rng(before)
    second = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


@pytest.mark.parametrize("which, every, stop", [("coopvaebm", 5, 10), ("coopvaebm", N_BATCHES, N_BATCHES),
                                                ("vae", 5, 25)], ids=["mid-epoch", "epoch-end", "vae"])
def test_resumed_run_is_bit_identical(workdir, monkeypatch, caplog, which, every, stop):
    """Interrupted right after the state at ``stop`` and rerun: the same weights and curves as one whole run."""
    ckpt, state = paths.checkpoint("digits", which, 0), paths.train_state("digits", which, 0)
    curves = paths.curves("digits", which, 0)
    train_in_process(which, checkpoint_every=every)
    assert not state.parent.exists(), "a finished run must leave no state behind"
    whole, whole_curves = workdir / "whole.pt", curves.read_bytes()
    shutil.move(ckpt, whole)

    with monkeypatch.context() as m:
        interrupt_at(m, stop)
        with pytest.raises(Interrupt):
            train_in_process(which, checkpoint_every=every)
    assert torch.load(state, weights_only=True)["iteration"] == stop and not ckpt.exists()
    caplog.set_level("INFO", logger="pipeline")
    train_in_process(which, checkpoint_every=every)
    assert f"resumed from iteration {stop}" in caplog.text
    assert_same_weights(whole, ckpt)
    assert curves.read_bytes() == whole_curves
    assert not state.parent.exists()


def test_epoch_hook_sees_every_epoch_and_changes_nothing(workdir):
    """``on_epoch_end`` (benchmarks/epochs.py) gets the nets after each epoch; the run's bytes stay the same."""
    ckpt = paths.checkpoint("digits", "coopvaebm", 0)
    train_in_process()
    whole = workdir / "whole.pt"
    shutil.move(ckpt, whole)
    seen: list[tuple[int, dict[str, torch.Tensor]]] = []

    def hook(epoch: int, models: dict) -> None:
        seen.append((epoch, {f"{n}.{k}": v.detach().clone() for n, m in models.items() for k, v in m.state_dict().items()}))

    params = shrink(load_params("params.yaml"), "coopvaebm")
    train_stage(params, "digits", "coopvaebm", 0, "cpu", progress=False, on_epoch_end=hook)
    assert [e for e, _ in seen] == list(range(TINY["epochs"]))
    assert_same_weights(whole, ckpt)
    last = seen[-1][1]
    assert all(torch.equal(last[k], v) for k, v in tensors(ckpt).items()), "the last epoch's nets are the checkpoint's"
    assert not torch.equal(seen[0][1]["ebm.0.weight"], last["ebm.0.weight"]), "the hook saw the training move"


def test_state_of_another_config_is_refused_naming_the_keys(workdir, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(Interrupt):
            train_in_process()
    named = r"iteration 5\) of another configuration.*datasets\.digits\.methods\.coopvaebm\.kl_weight: 0\.25 -> 0\.5"
    with pytest.raises(resume.StateMismatchError, match=named + r".*rm -r state/digits/coopvaebm"):
        train_in_process(kl_weight=0.5)
    assert not CKPT.exists()
    # checkpoint_every and max_energy_gap change no number: the same state resumes under new values.
    train_in_process(checkpoint_every=7, max_energy_gap=1.0e12)
    assert CKPT.exists() and not STATE.parent.exists()


def test_divergence_stops_with_the_last_good_state_and_no_outputs(workdir, monkeypatch):
    """|energy gap| above max_energy_gap after a state at iteration 10: exit 1, message, state kept, no outputs."""
    with monkeypatch.context() as m:
        interrupt_at(m, 10)
        with pytest.raises(Interrupt):
            train_in_process()
    write_params(workdir, max_energy_gap=1.0e-6)  # not fingerprinted: the run resumes at 10, then trips
    proc = cli(workdir, *TRAIN, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    msg = proc.stderr
    assert "resumed from iteration 10" in msg
    assert "DivergenceError" in msg and "|energy_gap| = " in msg and "above max_energy_gap = 1e-06" in msg
    assert "at iteration 11 (epoch 0)" in msg
    assert "last good state (iteration 10) is kept in state/digits/coopvaebm/" in msg
    assert not CKPT.exists() and not paths.curves("digits", "coopvaebm", 0).exists()
    assert torch.load(STATE, weights_only=True)["iteration"] == 10


def test_nonfinite_langevin_samples_stop_training(workdir):
    """A Langevin step size that blows x̂ up: the guard names the non-finite quantities; nothing is written."""
    write_params(workdir, langevin={**TINY_LANGEVIN, "step_size": 1.0e4, "ref_sigma": 0.016, "test_steps": 3,
                                    "noise": False})
    proc = cli(workdir, *TRAIN, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "training diverged: non-finite" in proc.stderr and "revision_l2 (the Langevin samples x̂)" in proc.stderr
    assert "at iteration 1 (epoch 0)" in proc.stderr and "No good state was saved before it" in proc.stderr
    assert not CKPT.exists() and not paths.curves("digits", "coopvaebm", 0).exists()


# --------------------------------------------------------------------------------------------------
# Real kills: the CLI, Snakemake and DVC, compared with one uninterrupted run (one thread everywhere).

@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, prepared) -> Path:
    """The checkpoint of an uninterrupted CLI run with the tiny params, at one thread."""
    root = tmp_path_factory.mktemp("whole")
    shutil.copytree(prepared, root / "data")
    write_params(root)
    cli(root, *TRAIN)
    assert not (root / STATE.parent).exists()
    return root / CKPT


def start(cmd: list[str], root: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_when_saved(proc: subprocess.Popen, state: Path, at_least: int, timeout: float = 240) -> int:
    """SIGKILL ``proc`` and all its children once ``state`` holds iteration >= ``at_least``; return that iteration."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed: make the tiny run longer"
        if state.exists():
            iteration = torch.load(state, weights_only=True)["iteration"]
            if iteration >= at_least:
                family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
                for p in family:
                    p.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                psutil.wait_procs(family, timeout=30)
                return iteration
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no state with iteration >= {at_least} in {timeout} s")


def test_sigkill_then_rerun_resumes_bit_identically(tmp_path, prepared, whole_run):
    shutil.copytree(prepared, tmp_path / "data")
    write_params(tmp_path)
    killed_at = kill_when_saved(start([sys.executable, "-m", "pipeline", *TRAIN], tmp_path), tmp_path / STATE, 10)
    assert not (tmp_path / CKPT).exists()
    rerun = cli(tmp_path, *TRAIN)
    resumed = int(rerun.stderr.split("resumed from iteration ")[1].split()[0])
    assert 10 <= killed_at <= resumed < TINY["epochs"] * N_BATCHES
    assert_same_weights(whole_run, tmp_path / CKPT)
    assert (tmp_path / CKPT).read_bytes() == whole_run.read_bytes()


def workflow_copy(dst: Path) -> Path:
    """A tiny_copy of the repository (tests/test_workflows.py) with this file's tiny CoopVAEBM settings."""
    from test_workflows import tiny_copy

    root = tiny_copy(dst)
    params = shrink(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def tool(cmd: list[str], root: Path) -> str:
    proc = subprocess.run(cmd, cwd=root, env=env(), text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_snakemake_rerun_incomplete_resumes(tmp_path, whole_run):
    root = workflow_copy(tmp_path)
    target = str(CKPT)
    tool(["snakemake", "--cores", "1", "data/prepared/digits.npz"], root)
    killed_at = kill_when_saved(start(["snakemake", "--cores", "1", target], root), root / STATE, 10)
    tool(["snakemake", "--cores", "1", "--unlock"], root)  # a killed Snakemake leaves its lock behind
    out = tool(["snakemake", "--cores", "1", "--rerun-incomplete", target], root)
    log = (root / "logs/digits/coopvaebm/seed0/train.log").read_text()
    resumed = int(log.split("resumed from iteration ")[1].split()[0])
    assert 10 <= killed_at <= resumed, out[-2000:]
    assert (root / CKPT).read_bytes() == whole_run.read_bytes()


@pytest.mark.slow
def test_dvc_repro_resumes(tmp_path, whole_run):
    root = workflow_copy(tmp_path)
    stage = "train@digits-coopvaebm-0"
    killed_at = kill_when_saved(start(["dvc", "repro", stage], root), root / STATE, 10)
    out = tool(["dvc", "repro", stage], root)
    log = (root / "logs/digits/coopvaebm/seed0/train.log").read_text()
    resumed = int(log.split("resumed from iteration ")[1].split()[0])
    assert 10 <= killed_at <= resumed, out[-2000:]
    assert (root / CKPT).read_bytes() == whole_run.read_bytes()
    assert "up to date" in tool(["dvc", "status", stage], root)
