"""Snakemake and DVC: the same stages, files and command lines, and real runs of the digits chain."""

from __future__ import annotations

import json
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
    # `official`: the authors' checkpoint's chain, in `all` only when its files are there
    dry = run(["snakemake", "--cores", "1", "-n", "-p", "--forceall", "all", "official"], in_repo)
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


def _arg(cmd: str, flag: str) -> str:
    return cmd.split(f"{flag} ")[1].split()[0] if f"{flag} " in cmd else ""


METHODS = ("coopvaebm", "coopvaebm-noise", "vae", "ebm", "coopnets")
EXPERIMENTS = ("completion", "reconstruction", "interpolation", "trajectory")


def test_dry_run_lists_every_stage_of_every_dataset(in_repo):
    """Every method x seed x experiment of digits, every method of the paper datasets."""
    dry = run(["snakemake", "--cores", "all", "-n", "-p", "--forceall"], in_repo)
    planned = {(j["rule"], _arg(c, "--dataset"), _arg(c, "--method"), _arg(c, "--seed"))
               for c, j in snakemake_jobs(dry.stdout + dry.stderr).items()}
    for dataset in ("cifar10", "svhn", "celeba"):
        for rule in ("prepare", "reference", "score_real", "tables", "check"):
            assert (rule, dataset, "", "") in planned, (rule, dataset)
        for method in METHODS:
            for rule in ("train", "sample", "score"):
                assert (rule, dataset, method, "0") in planned, (rule, dataset, method)
    for method in METHODS:
        for seed in "012":
            for rule in ("train", "sample", "score"):
                assert (rule, "digits", method, seed) in planned, (rule, method, seed)
    for seed in "012":
        for rule in EXPERIMENTS:
            assert (rule, "digits", "coopvaebm", seed) in planned, (rule, seed)
    assert ("paper_tables", "", "", "") in planned and ("classifier", "digits", "", "") in planned
    for dataset in ("cifar10", "svhn", "celeba"):
        assert ("weights", dataset, "", "") in planned
    # Without the authors' checkpoint (data/raw/official/, not in the repository) the full run neither
    # imports it nor waits for its scores: the paper table's row reads "not run".
    assert not (in_repo / "data/raw/official/model.ckpt-3000.index").exists()
    assert ("import_official", "", "", "") not in planned and ("sample", "cifar10", "official", "0") not in planned
    paper = next(j for j in snakemake_jobs(dry.stdout + dry.stderr).values() if j["rule"] == "paper_tables")
    assert not any("/official/" in f for f in paper["input"])
    assert {f"results/{d}/{m}/seed0/metrics.json" for d in ("cifar10", "svhn", "celeba") for m in METHODS} <= \
        paper["input"]
    official = run(["snakemake", "--cores", "1", "-n", "-p", "--forceall", "official"], in_repo)
    rules = {j["rule"] for j in snakemake_jobs(official.stdout + official.stderr).values()}
    assert {"import_official", "sample", "score"} <= rules and "train" not in rules


SEEDED = {"train", "sample", "score", *EXPERIMENTS}


def test_the_seed_wildcard_changes_only_the_seeded_stages(in_repo):
    """digits_all: seeds 1 and 2 repeat exactly seed 0's seeded jobs (with their seed), nothing upstream."""
    dry = run(["snakemake", "--cores", "1", "-n", "-p", "--forceall", "digits_all"], in_repo)
    jobs = snakemake_jobs(dry.stdout + dry.stderr)
    by_seed: dict[str, set[str]] = {}
    for cmd, job in jobs.items():
        seed = _arg(cmd, "--seed")
        files = " ".join(sorted(job["input"] | job["output"]))
        if job["rule"] in SEEDED:
            assert seed and f"/seed{seed}" in files, cmd
            by_seed.setdefault(seed, set()).add(cmd.replace(f"seed{seed}", "seed*").replace(f"--seed {seed}", "--seed *"))
        else:  # prepare, classifier, score_real, tables, check: one job, no seed in its command or outputs
            assert not seed and not any("/seed" in o for o in job["output"]), cmd
    assert set(by_seed) == {"0", "1", "2"} and by_seed["0"] == by_seed["1"] == by_seed["2"]
    assert len(by_seed["0"]) == 3 * len(METHODS) + len(EXPERIMENTS)
    unseeded = sorted(j["rule"] for j in jobs.values() if j["rule"] not in SEEDED)
    assert unseeded == ["check", "classifier", "prepare", "score_real", "tables"]
    # dvc.yaml: the same, stage by stage
    stages = {s["stage"] for s in dvc_stages(in_repo).values()}
    for rule in SEEDED:
        digits = {x for x in stages if x.startswith(f"{rule}@digits-")}
        assert {x.rsplit("-", 1)[1] for x in digits} == {"0", "1", "2"}, rule


def test_the_authors_checkpoint_joins_the_full_run_when_its_files_are_there(tmp_path):
    """With data/raw/official/model.ckpt-3000.index present, `all` imports, samples and scores it and the
    paper tables wait for its scores; the files' content is not read by the plan."""
    root = tiny_copy(tmp_path)
    (root / "data/raw/official").mkdir(parents=True)
    (root / "data/raw/official/model.ckpt-3000.index").write_bytes(b"")
    dry = run(["snakemake", "--cores", "1", "-n", "-p", "--forceall", "all"], root)
    jobs = snakemake_jobs(dry.stdout + dry.stderr)
    assert {"import_official"} <= {j["rule"] for j in jobs.values()}
    paper = next(j for j in jobs.values() if j["rule"] == "paper_tables")
    assert "results/cifar10/official/seed0/metrics.json" in paper["input"]


@pytest.mark.slow
def test_full_run_without_archives_fails_fast_before_training(tmp_path):
    """No archives, no network: the run stops with the download message and no training starts."""
    root = tiny_copy(tmp_path)
    proc = run(["snakemake", "--cores", "2"], root, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # Whichever of the priority-100 jobs fails first stops the run: a paper archive, Fashion-MNIST's idx files
    # (tiny_copy), or the Inception weights (Snakemake often starts weights@cifar10 beside prepare@digits).
    assert any(name in out for name in ("cifar-10-python.tar.gz", "train_32x32.mat", "img_align_celeba.zip",
                                        "apt-get install dataset-fashion-mnist", "Inception weights missing")), out[-3000:]
    assert "rule train:" not in out and not list(root.glob("models/*/*.pt"))
    assert not (root / "data/prepared/cifar10.npz").exists()
    assert not (root / "data/prepared/fashion-mnist.npz").exists()


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
    "experiments": {"n_images": 40},
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
    for method, cfg in d["methods"].items():  # every method: the ones with chains like coopvaebm
        cfg.update(TINY["vae"] if method == "vae" else TINY["coopvaebm"])
        if "langevin" in cfg:
            cfg["langevin"] = {**cfg["langevin"], **TINY["langevin"]}
    d["sample"].update(TINY["sample"])
    d["score"].update(TINY["score"])
    d["experiments"].update(TINY["experiments"])
    params["check"]["digits"] = [{"metric": "real.fd_digits", "max": 1.0e9}]
    # A machine without the Debian package dataset-fashion-mnist, whatever this one has: a full run's fashion-mnist
    # prepare fails fast too (its classifier would otherwise train at full size while the run shuts down).
    params["datasets"]["fashion-mnist"]["prepare"]["system_dir"] = str(dst / "no-dataset-fashion-mnist")
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


# What `snakemake -n digits` plans after a code edit on a finished run (rule:method).
SCORING = {"score:coopvaebm", "score:vae", "score_real:", "tables_ci:", "check_ci:"}
SAMPLING = {"sample:coopvaebm", "sample:vae", "score:coopvaebm", "score:vae", "tables_ci:", "check_ci:"}
AFTER_TRAINING = {"train:coopvaebm", "train:vae", "sample:coopvaebm", "sample:vae", "score:coopvaebm", "score:vae",
                  *(f"{e}:coopvaebm" for e in EXPERIMENTS), "tables_ci:", "check_ci:"}


def edited_plan(root: Path, path: str) -> set[str]:
    """The digits jobs Snakemake plans once `path`'s content changes (a comment appended); then restored.

    Content, not the mtime: Snakemake (9.x) compares a newer input's checksum with the one it stored,
    so `touch` alone plans nothing (checked in the test).
    """
    f = root / path
    text = f.read_text()
    f.write_text(text + "\n# edited\n")
    try:
        return planned_snakemake_jobs(root)
    finally:
        f.write_text(text)


def edited_status(root: Path, path: str, targets: list[str]) -> set[str]:
    """The stages `dvc status` reports changed once `path`'s content changes (a comment appended); restored."""
    f = root / path
    text = f.read_text()
    f.write_text(text + "\n# edited\n")
    try:
        out = run(["dvc", "status", "--json", "--with-deps", *targets], root).stdout
    finally:
        f.write_text(text)
    return {stage for stage, changes in json.loads(out).items()
            if any(path in c.get("changed deps", {}) for c in changes if isinstance(c, dict))}


EXPECTED_OUTPUTS = [
    "data/prepared/digits.npz", "data/prepared/digits.json", "models/digits/classifier.pt",
    "models/digits/coopvaebm/seed0.pt", "models/digits/vae/seed0.pt", "results/digits/coopvaebm/seed0/samples.png",
    "results/digits/coopvaebm/seed0/metrics.json", "results/digits/vae/seed0/metrics.json",
    "results/digits/real/metrics.json", "results/digits/coopvaebm/seed0/train/curves.csv",
    *(f"results/digits/coopvaebm/seed0/{e}.png" for e in EXPERIMENTS),
    "results/digits/coopvaebm/seed0/completion.json", "results/digits/coopvaebm/seed0/reconstruction.json",
    "results/tables/digits-ci.md", "results/tables/digits-ci.tex", "results/digits/check-ci.json",
]


@pytest.mark.slow
def test_snakemake_runs_digits_chain(tmp_path):
    root = tiny_copy(tmp_path)
    run(["snakemake", "--cores", "2", "digits"], root)
    for f in EXPECTED_OUTPUTS:
        assert (root / f).is_file(), f
    metrics = yaml.safe_load((root / "results/digits/coopvaebm/seed0/metrics.json").read_text())
    assert {"fd_digits", "fd_digits_vae", "kid_digits", "fd_digits_cleanfid"} <= set(metrics)
    table = (root / "results/tables/digits-ci.md").read_text()
    assert "| coopvaebm | 1 |" in table and "completion" in table

    # Nothing changed: nothing to do.
    assert planned_snakemake_jobs(root) == set()
    # A code edit reruns the stages whose import closure holds the file, and what reads their outputs.
    assert edited_plan(root, "pipeline/metrics.py") == SCORING
    assert edited_plan(root, "pipeline/stages/score_classifier.py") == SCORING
    assert edited_plan(root, "pipeline/nets.py") == AFTER_TRAINING
    assert edited_plan(root, "pipeline/pixels.py") == AFTER_TRAINING  # to_float scales the training data
    assert edited_plan(root, "pipeline/sample.py") == SAMPLING  # the sampler is not training's code
    assert edited_plan(root, "pipeline/tables.py") == {"tables_ci:"}
    (root / "pipeline/metrics.py").touch()  # a newer mtime, the same content
    assert planned_snakemake_jobs(root) == set()
    # One value of the VAE baseline changed: exactly its chain and what reads its metrics rerun.
    set_param(root, ["datasets", "digits", "methods", "vae", "kl_weight"], 0.5)
    assert planned_snakemake_jobs(root) == {"train:vae", "sample:vae", "score:vae", "tables_ci:", "check_ci:"}
    # A bad value stops Snakemake at parse time, naming the key.
    set_param(root, ["datasets", "digits", "methods", "vae", "kl_weight"], "heavy")
    bad = run(["snakemake", "--cores", "1", "-n", "digits"], root, check=False)
    assert bad.returncode != 0 and "kl_weight" in bad.stdout + bad.stderr


# The embedded chain's final stages (CI's scope); the paper's datasets need archives and weights (not here).
DIGITS = ["tables_ci@digits", "check_ci@digits", "interpolation@digits-coopvaebm-0", "trajectory@digits-coopvaebm-0"]


def dvc_ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.mark.slow
def test_dvc_repro_runs_digits_chain(tmp_path):
    root = tiny_copy(tmp_path)
    first = run(["dvc", "repro", *DIGITS], root)
    assert dvc_ran(first.stdout) == {
        "prepare@digits", "classifier@digits", "train@digits-coopvaebm-0", "train@digits-vae-0",
        "sample@digits-coopvaebm-0", "sample@digits-vae-0", "score@digits-coopvaebm-0", "score@digits-vae-0",
        "score_real@digits", *(f"{e}@digits-coopvaebm-0" for e in EXPERIMENTS), "tables_ci@digits", "check_ci@digits"}
    for f in EXPECTED_OUTPUTS:
        assert (root / f).is_file(), f
    assert dvc_ran(run(["dvc", "repro", *DIGITS], root).stdout) == set()

    # Rerun one stage alone; training is deterministic, so everything stays up to date.
    single = run(["dvc", "repro", "--force", "--single-item", "train@digits-coopvaebm-0"], root)
    assert dvc_ran(single.stdout) == {"train@digits-coopvaebm-0"}
    assert "up to date" in run(["dvc", "status", "--with-deps", *DIGITS], root).stdout

    # A code edit changes exactly the stages whose import closure holds the file (dvc.yaml's deps).
    runs = ("coopvaebm-0", "vae-0")
    experiments = {f"{e}@digits-coopvaebm-0" for e in EXPERIMENTS}
    assert edited_status(root, "pipeline/metrics.py", DIGITS) == {*(f"score@digits-{r}" for r in runs),
                                                                    "score_real@digits"}
    trained = {*(f"{s}@digits-{r}" for s in ("train", "sample") for r in runs), *experiments}
    assert edited_status(root, "pipeline/nets.py", DIGITS) == trained
    assert edited_status(root, "pipeline/pixels.py", DIGITS) == trained  # to_float scales the training data
    assert edited_status(root, "pipeline/sample.py", DIGITS) == {f"sample@digits-{r}" for r in runs}
    assert edited_status(root, "pipeline/tables.py", DIGITS) == {"tables_ci@digits"}
    assert "up to date" in run(["dvc", "status", "--with-deps", *DIGITS], root).stdout

    set_param(root, ["datasets", "digits", "methods", "vae", "kl_weight"], 0.5)
    assert dvc_ran(run(["dvc", "repro", *DIGITS], root).stdout) == {
        "train@digits-vae-0", "sample@digits-vae-0", "score@digits-vae-0", "tables_ci@digits", "check_ci@digits"}

    shown = run(["dvc", "metrics", "show"], root).stdout
    assert "fd_digits" in shown and "results/digits/coopvaebm/seed0/metrics.json" in shown
    plots = run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)
    assert (tmp_path / "plots" / "index.html").is_file(), plots.stdout
