"""The Inception weights on shared storage: one directory for both libraries, checked before any training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import inception as inc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_caches(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Both library caches empty temporary dirs and the env var cleared, so no real cache is seen."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(inc, "CLEANFID_CACHE_DIR", tmp_path / "cleanfid_cache")
    monkeypatch.delenv(inc.ENV_VAR, raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints", tmp_path / "cleanfid_cache"


def test_download_dir_is_the_configured_one_then_the_env_var_then_the_cache(tmp_path, no_caches, monkeypatch):
    cache = no_caches[1]
    assert inc.download_dir(None, cache) == cache
    monkeypatch.setenv(inc.ENV_VAR, str(tmp_path / "shared"))
    assert inc.download_dir(None, cache) == tmp_path / "shared"
    assert inc.download_dir(tmp_path / "cfg", cache) == tmp_path / "cfg"


def test_both_libraries_download_into_pipeline_inception_dir(tmp_path, no_caches, monkeypatch):
    """With PIPELINE_INCEPTION_DIR set, neither file lands in a node-local cache (clean-fid's is /tmp)."""
    shared = tmp_path / "shared"
    monkeypatch.setenv(inc.ENV_VAR, str(shared))
    calls = []

    def fake(name):  # stands in for the network: writes the file where the library was told to
        def fetch(directory, *_):
            calls.append((name, Path(directory)))
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / name).write_bytes(b"x")
            return Path(directory) / name
        return fetch

    monkeypatch.setattr(inc, "_download_fidelity", fake(inc.fidelity_filename()))
    monkeypatch.setattr(inc, "_download_cleanfid", fake(inc.CLEANFID_FILENAME))
    found = inc.find_weights(None, download=True)
    assert calls == [(inc.fidelity_filename(), shared), (inc.CLEANFID_FILENAME, shared)]
    assert found == inc.InceptionWeights(shared / inc.fidelity_filename(), shared / inc.CLEANFID_FILENAME)
    assert not any(p.exists() for p in no_caches)
    calls.clear()
    assert inc.find_weights(None, download=True) == found and calls == []  # found there next time


def _weights_stage(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "weights", "--dataset", "cifar10", "--params",
                           str(root / "params.yaml")], cwd=root, env=env, capture_output=True, text=True)


def test_weights_stage_writes_its_marker_or_names_the_directory(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["cifar10"]["score"]["download_weights"] = False  # offline
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": str(tmp_path / "torch_home"),
           inc.ENV_VAR: str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    # torch-fidelity's cache is empty (TORCH_HOME), so the check fails even where /tmp holds clean-fid's file
    bad = _weights_stage(tmp_path, env)
    assert bad.returncode == 1, bad.stderr
    assert inc.ENV_VAR in bad.stderr and str(tmp_path / "empty") in bad.stderr
    assert not (tmp_path / "data/reference/cifar10-weights.json").exists()

    inc.write_random_weights(tmp_path / "shared")
    env[inc.ENV_VAR] = str(tmp_path / "shared")
    ok = _weights_stage(tmp_path, env)
    assert ok.returncode == 0, ok.stderr
    marker = json.loads((tmp_path / "data/reference/cifar10-weights.json").read_text())
    assert marker == {"torch-fidelity": inc.fidelity_filename(), "clean-fid": inc.CLEANFID_FILENAME}
    assert str(tmp_path / "shared") in ok.stderr


def _dry_run(root: Path) -> list[dict]:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    out = subprocess.run(["snakemake", "--cores", "1", "-n", "--forceall", "all"], cwd=root, env=env,
                         capture_output=True, text=True, check=True)
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", out.stdout + out.stderr, flags=re.M)[1:]:
        fields = dict(re.findall(r"^ {4}(\w+): ([^\n]*)$", block, re.M))
        jobs.append({"rule": re.match(r"(?:local)?rule (\w+):", block).group(1),
                     "input": {s.strip() for s in fields.get("input", "").split(",") if s.strip()},
                     "wildcards": dict(re.findall(r"(\w+)=([^,\s]+)", fields.get("wildcards", ""))),
                     "resources": dict(re.findall(r"(\w+)=([^,\s]+)", fields.get("resources", "")))})
    return jobs


def test_inception_stages_get_a_gpu_and_training_waits_for_the_weights(in_repo):
    """The paper datasets' Inception and training jobs ask for a GPU; the classifier-scored ones (digits,
    fashion-mnist) run on CPU and wait for no Inception weights."""
    from pipeline.codedeps import EMBEDDED

    jobs = _dry_run(in_repo)
    gpu = {"train", "sample", "reference", "score", "score_real", "completion"}
    checked = set()
    for job in jobs:
        dataset = job["wildcards"].get("dataset")
        if job["rule"] in gpu and dataset:
            want = "0" if dataset in EMBEDDED else "1"
            assert job["resources"].get("gpu") == want, (job["rule"], dataset, job["resources"])
            checked.add((job["rule"], dataset not in EMBEDDED))
        if job["rule"] == "train":
            marker = f"data/reference/{dataset}-weights.json"
            assert (marker in job["input"]) == (dataset not in EMBEDDED), (dataset, job["input"])
    assert {("reference", True), ("score", True), ("score_real", True), ("score", False)} <= checked
    assert {j["wildcards"]["dataset"] for j in jobs if j["rule"] == "weights"} == {"cifar10", "svhn", "celeba"}
