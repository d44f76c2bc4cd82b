"""Snakemake and DVC: the same stages, files and command lines, and real runs of the digits chain."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "PIPELINE_PROGRESS": "0"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def snakemake_jobs(text: str) -> dict[str, dict]:
    """Parse a `snakemake -n -p` listing into {shell command: {rule, input, output, log}}.

    Target-only rules (no shell command, like `all` and `digits`) are left out.
    """
    jobs = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", text, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        shell = re.search(r"^Shell command: ([^\n]+)$", block, re.M)
        if shell is None or shell.group(1).strip() == "None":
            continue
        fields = dict(re.findall(r"^ {4}(\w+): ([^\n]*)$", block, re.M))

        def split(key: str) -> set[str]:
            return {s.strip() for s in fields.get(key, "").split(",") if s.strip()}

        jobs[shell.group(1).strip()] = {"rule": rule, "input": split("input"), "output": split("output"),
                                        "log": split("log")}
    return jobs


def dvc_stages(root: Path) -> dict[str, dict]:
    """{command: {stage, deps, outs, params}} from dvc.yaml through DVC's own parser."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            deps = {str(d.def_path) for d in stage.deps if not isinstance(d, ParamsDependency)}
            params = {p for d in stage.deps if isinstance(d, ParamsDependency) for p in d.params}
            stages[stage.cmd] = {"stage": stage.addressing, "deps": deps, "outs": {str(o.def_path) for o in stage.outs},
                                 "params": params}
    return stages


def test_snakefile_and_dvc_yaml_agree(in_repo):
    dry = run(["snakemake", "--cores", "1", "-n", "-p", "--forceall", "all"], in_repo)
    smk = snakemake_jobs(dry.stdout + dry.stderr)
    dvc = dvc_stages(in_repo)
    assert smk, "no jobs parsed from the snakemake dry run"
    assert set(smk) == set(dvc), f"commands only in Snakefile: {set(smk) - set(dvc)}; only in dvc.yaml: {set(dvc) - set(smk)}"
    for cmd, job in smk.items():
        stage = dvc[cmd]
        assert stage["stage"].split("@")[0] == job["rule"], (cmd, stage["stage"], job["rule"])
        assert job["input"] == stage["deps"], f"{cmd}: inputs differ: {job['input'] ^ stage['deps']}"
        assert job["output"] == stage["outs"], f"{cmd}: outputs differ: {job['output'] ^ stage['outs']}"
        assert len(job["log"]) == 1 and f"--log {next(iter(job['log']))}" in cmd, (cmd, job["log"])


def test_dry_run_lists_every_stage_of_every_dataset(in_repo):
    dry = run(["snakemake", "--cores", "all", "-n", "-p", "--forceall"], in_repo)
    planned = {(j["rule"], c.split("--dataset ")[1].split()[0] if "--dataset" in c else "")
               for c, j in snakemake_jobs(dry.stdout + dry.stderr).items()}
    for dataset in ("cifar10", "svhn", "celeba"):
        for rule in ("prepare", "reference", "train", "sample", "score", "score_real", "tables", "check"):
            assert (rule, dataset) in planned, (rule, dataset)
    assert ("paper_tables", "") in planned and ("classifier", "digits") in planned


@pytest.mark.slow
def test_full_run_without_archives_fails_fast_before_training(tmp_path):
    """No archives, no network: the run stops with the download message and no training starts."""
    root = tiny_copy(tmp_path)
    proc = run(["snakemake", "--cores", "2"], root, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cifar-10-python.tar.gz" in out or "train_32x32.mat" in out or "img_align_celeba.zip" in out, out[-3000:]
    assert "rule train:" not in out and not list(root.glob("models/*/*.pt"))
    assert not (root / "data/prepared/cifar10.npz").exists()


def test_snakemake_lint_is_clean(in_repo):
    out = run(["snakemake", "--lint"], in_repo)
    assert "Lints for" not in out.stdout + out.stderr


def test_conda_env_pins_match_pyproject(in_repo):
    import tomllib

    deps = set(tomllib.loads((in_repo / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((in_repo / "envs/pipeline.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == deps


# --------------------------------------------------------------------------------------------------
# Real runs in a temporary copy of the repository, with tiny iteration counts.

TINY = {
    "classifier": {"epochs": 3, "min_accuracy": 0.5},
    "coopvaebm": {"epochs": 1, "n_chains": 16, "log_every": 5},
    "langevin": {"train_steps": 2, "test_steps": 3},
    "vae": {"epochs": 1, "log_every": 5},
    "sample": {"n_samples": 40},
    "score": {"kid_subsets": 5, "kid_subset_size": 32},
}


def tiny_copy(dst: Path) -> Path:
    """Copy the tracked (and new, not ignored) files of the repo to dst, shrink params, make it a git repo."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file() and not f.startswith(("results/", "dvc.lock")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    d = params["datasets"]["digits"]
    d["classifier"].update(TINY["classifier"])
    d["methods"]["coopvaebm"].update(TINY["coopvaebm"])
    d["methods"]["coopvaebm"]["langevin"].update(TINY["langevin"])
    d["methods"]["vae"].update(TINY["vae"])
    d["sample"].update(TINY["sample"])
    d["score"].update(TINY["score"])
    params["check"]["digits"] = [{"metric": "real.fd_digits", "max": 1.0e9}]
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dst)
    return dst


def set_param(root: Path, path: list[str], value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    node = params
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def planned_snakemake_jobs(root: Path, target: str = "digits") -> set[str]:
    out = run(["snakemake", "--cores", "1", "-n", "-p", target], root)
    return {f"{j['rule']}:{c.split('--method ')[1].split()[0] if '--method' in c else ''}"
            for c, j in snakemake_jobs(out.stdout + out.stderr).items()}


EXPECTED_OUTPUTS = [
    "data/prepared/digits.npz", "data/prepared/digits.json", "models/digits/classifier.pt",
    "models/digits/coopvaebm.pt", "models/digits/vae.pt", "results/digits/coopvaebm/samples.png",
    "results/digits/coopvaebm/metrics.json", "results/digits/vae/metrics.json", "results/digits/real/metrics.json",
    "results/digits/coopvaebm/train/curves.csv", "results/tables/digits.md", "results/tables/digits.tex",
    "results/digits/check.json",
]


@pytest.mark.slow
def test_snakemake_runs_digits_chain(tmp_path):
    root = tiny_copy(tmp_path)
    run(["snakemake", "--cores", "2", "digits"], root)
    for f in EXPECTED_OUTPUTS:
        assert (root / f).is_file(), f
    metrics = yaml.safe_load((root / "results/digits/coopvaebm/metrics.json").read_text())
    assert {"fd_digits", "fd_digits_vae", "kid_digits", "fd_digits_cleanfid"} <= set(metrics)
    assert "| coopvaebm |" in (root / "results/tables/digits.md").read_text()

    # Nothing changed: nothing to do.
    assert planned_snakemake_jobs(root) == set()
    # One value of the VAE baseline changed: exactly its chain and what reads its metrics rerun.
    set_param(root, ["datasets", "digits", "methods", "vae", "kl_weight"], 0.5)
    assert planned_snakemake_jobs(root) == {"train:vae", "sample:vae", "score:vae", "tables:", "check:"}
    # A bad value stops Snakemake at parse time, naming the key.
    set_param(root, ["datasets", "digits", "methods", "vae", "kl_weight"], "heavy")
    bad = run(["snakemake", "--cores", "1", "-n", "digits"], root, check=False)
    assert bad.returncode != 0 and "kl_weight" in bad.stdout + bad.stderr


# The embedded chain's final stages; the paper's datasets need archives and weights (not here).
DIGITS = ["tables@digits", "check@digits"]


def dvc_ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.mark.slow
def test_dvc_repro_runs_digits_chain(tmp_path):
    root = tiny_copy(tmp_path)
    first = run(["dvc", "repro", *DIGITS], root)
    assert dvc_ran(first.stdout) == {
        "prepare@digits", "classifier@digits", "train@digits-coopvaebm", "train@digits-vae",
        "sample@digits-coopvaebm", "sample@digits-vae", "score@digits-coopvaebm", "score@digits-vae",
        "score_real@digits", "tables@digits", "check@digits"}
    for f in EXPECTED_OUTPUTS:
        assert (root / f).is_file(), f
    assert dvc_ran(run(["dvc", "repro", *DIGITS], root).stdout) == set()

    # Rerun one stage alone; training is deterministic, so everything stays up to date.
    single = run(["dvc", "repro", "--force", "--single-item", "train@digits-coopvaebm"], root)
    assert dvc_ran(single.stdout) == {"train@digits-coopvaebm"}
    assert "up to date" in run(["dvc", "status", "--with-deps", *DIGITS], root).stdout

    set_param(root, ["datasets", "digits", "methods", "vae", "kl_weight"], 0.5)
    assert dvc_ran(run(["dvc", "repro", *DIGITS], root).stdout) == {
        "train@digits-vae", "sample@digits-vae", "score@digits-vae", "tables@digits", "check@digits"}

    shown = run(["dvc", "metrics", "show"], root).stdout
    assert "fd_digits" in shown and "results/digits/coopvaebm/metrics.json" in shown
    plots = run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)
    assert (tmp_path / "plots" / "index.html").is_file(), plots.stdout
