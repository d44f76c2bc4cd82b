"""params.yaml's digits thresholds hold on every recorded run of the robustness study of its configuration;
its Fashion-MNIST thresholds on every committed seed.

benchmarks/robustness/epochs200/runs.csv holds the digits chain of the configuration params.yaml trains
(coopvaebm and the vae baseline 200 epochs) run over training seeds × float perturbations
(`python benchmarks/robustness.py`, docs/robustness.md): each row is what CI's
reproduction could produce on some machine. A threshold that any recorded run crosses would make CI a
lottery, so this fails the suite instead, naming the run and the rule. The 100-epoch study
(benchmarks/robustness/runs.csv) is a record of the configuration before; it gates nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline import paths
from pipeline.check import evaluate
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "robustness" / "epochs200"
RUNS = RECORD / "runs.csv"
STUDIED = {"coopvaebm", "vae", "real"}  # the methods the robustness study trains


def _sources(rule: dict) -> set[str]:
    return {ref.split(".", 1)[0] for ref in (rule["metric"], rule.get("below", "real.x"))}


def _digits_rules(studied: bool) -> list[dict]:
    rules = load_params(ROOT / "params.yaml")["check"]["digits"]
    return [r for r in rules if (_sources(r) <= STUDIED) == studied]


def _rows() -> list[dict]:
    with RUNS.open() as f:
        return list(csv.DictReader(f))


def _values(row: dict) -> dict[str, float]:
    return {"coopvaebm.fd_digits": float(row["revised"]), "coopvaebm.fd_digits_vae": float(row["vae_own"]),
            "vae.fd_digits": float(row["vae_baseline"]), "real.fd_digits": float(row["floor"])}


def _committed_value(dataset: str, seed: int):
    def value_of(ref: str) -> float:
        source, key = ref.split(".", 1)
        path = ROOT / (paths.metrics(dataset, "real") if source == "real" else paths.metrics(dataset, source, seed))
        return float(json.loads(path.read_text())[key])
    return value_of


def test_the_record_is_of_the_configuration_params_yaml_trains():
    """Each override the record's runs were made with is what params.yaml now holds, so the thresholds
    are tested on runs of the configuration CI trains (change it, and this asks for a new record)."""
    methods = load_params(ROOT / "params.yaml")["datasets"]["digits"]["methods"]
    overrides = json.loads((RECORD / "config.json").read_text())["overrides"]
    assert overrides
    for name, value in overrides.items():
        method, key = name.split(":")
        cfg = methods[method]
        for k in key.split("."):
            cfg = cfg[k]
        assert cfg == value, f"the record's runs had {name}={value}; params.yaml has {cfg}"
    # coopvaebm-noise is the same training with the noise term: it follows coopvaebm's epochs
    assert methods["coopvaebm-noise"]["epochs"] == methods["coopvaebm"]["epochs"]


def test_study_is_complete():
    rows = _rows()
    assert len(rows) >= 20
    assert not [r for r in rows if r.get("error")], "a recorded run failed"
    assert len({r["perturb"] for r in rows}) >= 2
    assert len({r["seed"] for r in rows}) >= 10
    # the perturbations changed the trained bytes: every run's checkpoint is distinct
    assert len({r["ckpt_md5"] for r in rows}) == len(rows)


def test_every_recorded_run_passes_the_digits_thresholds():
    rules = _digits_rules(studied=True)
    failures = []
    for row in _rows():
        values = _values(row)
        for r in evaluate(rules, values.__getitem__):
            if not r["ok"]:
                failures.append(f"{row['machine']} {row['perturb']} seed {row['seed']}: {r['rule']}")
    assert not failures, "thresholds crossed by recorded runs:\n" + "\n".join(failures)


def test_the_check_can_fail():
    """The same rules reject a run where the revision made the VAE's samples worse."""
    rules = _digits_rules(studied=True)
    values = _values(_rows()[0])
    values["coopvaebm.fd_digits"] = values["coopvaebm.fd_digits_vae"] + 0.01
    assert not all(r["ok"] for r in evaluate(rules, values.__getitem__))


def test_the_check_asks_for_a_margin_over_the_baseline():
    """coopvaebm beating vae by less than the gate's margin fails, although it is still below vae."""
    rules = _digits_rules(studied=True)
    gate = [r for r in rules if r["metric"] == "coopvaebm.fd_digits" and r.get("below") == "vae.fd_digits"]
    assert len(gate) == 1 and gate[0]["margin"] > 0
    values = _values(_rows()[0])
    values["coopvaebm.fd_digits"] = values["vae.fd_digits"] - gate[0]["margin"] / 2
    values["coopvaebm.fd_digits_vae"] = 2 * values["vae.fd_digits"]  # so only the baseline gate can fail
    failed = [r for r in evaluate(rules, values.__getitem__) if not r["ok"]]
    assert [r["metric"] for r in failed] == ["coopvaebm.fd_digits"] and "vae.fd_digits" in failed[0]["rule"]


def test_every_committed_seed_passes_every_digits_threshold():
    """`digits_all`'s committed runs (results/digits/<method>/seed<k>/metrics.json), each seed on its own:
    stricter than `check`, which takes the mean over seeds. The baselines' thresholds (ebm, coopnets,
    coopvaebm-noise) rest on these 3 seeds only: the study above does not train them."""
    params = load_params(ROOT / "params.yaml")
    rules = params["check"]["digits"]
    assert _digits_rules(studied=False), "no threshold on the baselines"
    seeds = sorted({s for m in params["datasets"]["digits"]["methods"].values() for s in m["seeds"]})
    failures = []
    for seed in seeds:
        failures += [f"seed {seed}: {r['rule']}" for r in evaluate(rules, _committed_value("digits", seed)) if not r["ok"]]
    assert not failures, "thresholds crossed by committed runs:\n" + "\n".join(failures)


def test_every_committed_fashion_seed_passes_every_fashion_threshold():
    """The committed Fashion-MNIST runs (make fashion; results/fashion-mnist/<method>/seed<k>/metrics.json),
    each seed on its own, pass check.fashion-mnist (whose bounds were set from these seeds' spread), and the
    rules gate the revision, both methods and the floor."""
    params = load_params(ROOT / "params.yaml")
    rules = params["check"]["fashion-mnist"]
    assert {r["metric"].split(".", 1)[0] for r in rules} == {"coopvaebm", "vae", "real"}
    assert any(r.get("below") == "coopvaebm.fd_fashion_vae" for r in rules)
    seeds = sorted({s for m in params["datasets"]["fashion-mnist"]["methods"].values() for s in m["seeds"]})
    assert len(seeds) >= 3
    failures = []
    for seed in seeds:
        failures += [f"seed {seed}: {r['rule']}" for r in evaluate(rules, _committed_value("fashion-mnist", seed))
                     if not r["ok"]]
    assert not failures, "thresholds crossed by committed runs:\n" + "\n".join(failures)


def test_the_fashion_check_can_fail():
    """A revision that improves the VAE's samples by less than the gate's margin fails check.fashion-mnist."""
    rules = load_params(ROOT / "params.yaml")["check"]["fashion-mnist"]
    gate = [r for r in rules if r.get("below") == "coopvaebm.fd_fashion_vae"]
    assert len(gate) == 1 and gate[0]["margin"] > 0
    committed = _committed_value("fashion-mnist", 0)
    values = {ref: committed(ref) for r in rules for ref in (r["metric"], r.get("below", r["metric"]))}
    values["coopvaebm.fd_fashion_vae"] = values["coopvaebm.fd_fashion"] + gate[0]["margin"] / 2
    failed = [r for r in evaluate(rules, values.__getitem__) if not r["ok"]]
    assert [r["metric"] for r in failed] == ["coopvaebm.fd_fashion"] and "fd_fashion_vae" in failed[0]["rule"]
