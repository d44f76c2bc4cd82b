"""params.yaml's digits thresholds hold on every recorded run of the robustness study.

benchmarks/robustness/runs.csv holds the digits chain run over training seeds × float perturbations
(`python benchmarks/robustness.py`, README "Robustness"): each row is what CI's reproduction could
produce on some machine. A threshold that any recorded run crosses would make CI a lottery, so this
fails the suite instead, naming the run and the rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.check import evaluate
from pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "robustness" / "runs.csv"


def _rows() -> list[dict]:
    with RUNS.open() as f:
        return list(csv.DictReader(f))


def _values(row: dict) -> dict[str, float]:
    return {"coopvaebm.fd_digits": float(row["revised"]), "coopvaebm.fd_digits_vae": float(row["vae_own"]),
            "vae.fd_digits": float(row["vae_baseline"]), "real.fd_digits": float(row["floor"])}


def test_study_is_complete():
    rows = _rows()
    assert len(rows) >= 10
    assert not [r for r in rows if r.get("error")], "a recorded run failed"
    assert len({r["perturb"] for r in rows}) >= 3
    # the perturbations changed the trained bytes: every run's checkpoint is distinct
    assert len({r["ckpt_md5"] for r in rows}) == len(rows)


def test_every_recorded_run_passes_the_digits_thresholds():
    rules = load_params(ROOT / "params.yaml")["check"]["digits"]
    failures = []
    for row in _rows():
        values = _values(row)
        for r in evaluate(rules, values.__getitem__):
            if not r["ok"]:
                failures.append(f"{row['perturb']} seed {row['seed']}: {r['rule']}")
    assert not failures, "thresholds crossed by recorded runs:\n" + "\n".join(failures)


def test_the_check_can_fail():
    """The same rules reject a run where the revision made the VAE's samples worse."""
    rules = load_params(ROOT / "params.yaml")["check"]["digits"]
    values = _values(_rows()[0])
    values["coopvaebm.fd_digits"] = values["coopvaebm.fd_digits_vae"] + 0.01
    assert not all(r["ok"] for r in evaluate(rules, values.__getitem__))
