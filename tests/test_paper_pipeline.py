"""The paper-dataset chain, offline: a CIFAR-10 archive in the real format, Inception weight files in the
real formats (random weights), and every stage's real code from prepare to the paper tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.__main__ import main
from pipeline.inception import write_random_weights
from test_datasets import write_cifar

TINY_NETS = {"ebm_width": 8, "enc_width": 8, "gen_width": 8, "z_dim": 8, "init_std": 0.005}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inception")
    write_random_weights(d)
    return d


def tiny_cifar_params(root: Path, raw: Path, weights: Path | None) -> Path:
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    c = params["datasets"]["cifar10"]
    c["prepare"].update(raw_dir=str(raw), download=False)
    c["nets"] = dict(TINY_NETS)
    # The chain the tests run: the paper's method and the VAE baseline (and the imported checkpoint);
    # the other baselines share their code paths and are tested on digits (tests/test_methods.py).
    c["methods"] = {k: v for k, v in c["methods"].items() if k in ("coopvaebm", "vae", "official")}
    for name, m in c["methods"].items():
        if name != "official":  # the imported authors' checkpoint is not trained
            m.update(epochs=1, batch_size=10, log_every=1)
    c["methods"]["coopvaebm"].update(n_chains=6)
    c["methods"]["coopvaebm"]["langevin"].update(train_steps=1, test_steps=2)
    c["sample"]["n_samples"] = 12
    # Both shipped protocols at tiny counts: one reference set and conversion, so one Inception pass of it
    # (the grouping of other sets and conversions: tests/test_stages.py).
    c["score"].update(protocols={
        "official": {"n_samples": 6, "reference": "train", "n_reference": 10, "conversion": "official"},
        "50k-train": {"n_samples": 12, "reference": "train", "n_reference": 20, "conversion": "official"}},
        kid_subsets=3, kid_subset_size=6, isc_splits=2, batch_size=10,
        inception_weights_dir=str(weights) if weights else None, download_weights=False)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.slow
def test_cifar10_chain_offline(tmp_path, weights_dir, monkeypatch, checksums):
    raw = tmp_path / "raw"
    write_cifar(raw)
    checksums(raw / "cifar-10-python.tar.gz")
    params = tiny_cifar_params(tmp_path, raw, weights_dir)
    monkeypatch.chdir(tmp_path)
    args = ["--params", str(params), "--no-progress"]
    for stage in (["prepare", "--dataset", "cifar10"], ["reference", "--dataset", "cifar10"],
                  *(s for m in ("coopvaebm", "vae") for s in (["train", "--dataset", "cifar10", "--method", m],
                                                               ["sample", "--dataset", "cifar10", "--method", m],
                                                               ["score", "--dataset", "cifar10", "--method", m])),
                  ["score-real", "--dataset", "cifar10"], ["tables", "--dataset", "cifar10"], ["paper-tables"]):
        assert main([*stage, *args]) == 0, stage
    full = json.loads((tmp_path / "results/cifar10/coopvaebm/seed0/metrics.json").read_text())
    assert full["protocols"] == ["official", "50k-train"]
    assert "torch-fidelity" in full["implementation"] and "clean-fid" in full["implementation"]
    for name, counts in (("official", (6, 10)), ("50k-train", (12, 20))):
        m = full[name]
        for key in ("fid", "fid_vae", "inception_score", "inception_score_std", "kid", "kid_std", "fid_cleanfid_clean",
                    "fid_cleanfid_legacy_tensorflow", "inception_score_vae"):
            assert isinstance(m[key], float), (name, key)
        assert (m["n_samples"], m["n_reference"], m["reference"]) == (*counts, "train"), name
    assert full["official"]["fid"] != full["50k-train"]["fid"]  # other samples, other reference images
    with np.load(tmp_path / "data/reference/cifar10.npz") as z:
        assert {k.split("/")[0] for k in z.files} == {"train.official"}  # one pass serves both
        assert all(len(z[k]) == 20 for k in z.files)
    real = json.loads((tmp_path / "results/cifar10/real/metrics.json").read_text())
    assert all(real[p]["n_samples"] == 6 for p in real["protocols"])  # the fixture's test batch, whole
    paper = (tmp_path / "results/tables/paper.md").read_text()
    for name, text in (("official", "official: 6 samples vs the first 10 train images, both through the official"),
                       ("50k-train", "50k-train: 12 samples vs the first 20 train images, both through the official")):
        fid = full[name]["fid"]
        assert f"| cifar10 | coopvaebm | FID | 36.20 | {fid:.2f} | {fid - 36.20:.2f} | {text}" in paper, name
    table = (tmp_path / "results/tables/cifar10.md").read_text()
    assert "| coopvaebm | official | 1 |" in table and "| real data, test split (floor) | 50k-train |" in table
    assert "| svhn | coopvaebm | FID | not recovered | not run" in paper


def test_missing_weights_stop_the_reference_stage(tmp_path, monkeypatch, checksums, capsys):
    raw = tmp_path / "raw"
    write_cifar(raw)
    checksums(raw / "cifar-10-python.tar.gz")
    params = tiny_cifar_params(tmp_path, raw, tmp_path / "no-weights-here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr("pipeline.inception.CLEANFID_CACHE_DIR", tmp_path / "cleanfid-cache")
    assert main(["prepare", "--dataset", "cifar10", "--params", str(params), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["reference", "--dataset", "cifar10", "--params", str(params), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and "inception-2015-12-05.pt" in err
    assert "PIPELINE_INCEPTION_DIR" in err
    assert not (tmp_path / "data/reference").exists() or not any((tmp_path / "data/reference").iterdir())
