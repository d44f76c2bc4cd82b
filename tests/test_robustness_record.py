"""benchmarks/robustness.py keeps its record: a fresh clone extends runs.csv instead of overwriting it.

The per-run directories are not committed, so the committed runs.csv is the record; a run is
(machine, perturbation, seed), so the same seed on another CPU is a new run, not a duplicate.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(**kw) -> dict:
    base = {"seed": 0, "perturb": "t2", "revised": 2.5, "vae_own": 4.5, "vae_baseline": 4.4, "floor": 0.33,
            "ckpt_md5": "aaaa", "minutes": 6.0}
    return {**base, **kw}


def test_summarise_keeps_the_committed_runs_and_adds_new_machines(tmp_path):
    rob = _module()
    out = tmp_path / "robustness"
    shutil.copytree(ROOT / "benchmarks" / "robustness", out, ignore=shutil.ignore_patterns("runs", "classifier-*"))
    with (ROOT / "benchmarks" / "robustness" / "runs.csv").open() as f:
        committed = list(csv.DictReader(f))
    first = rob._from_csv(committed[0])
    # the same (perturbation, seed) as a committed run, on another machine: a new run
    other = _row(machine="Z: another CPU (2030-01-01)", seed=first["seed"], perturb=first["perturb"],
                 ckpt_md5="zzzz")
    (out / "runs" / "z").mkdir(parents=True)
    (out / "runs" / "z" / "row.json").write_text(json.dumps(other))
    assert rob.main(["--summarise", "--out", str(out)]) == 0
    with (out / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(committed) + 1
    assert {r["ckpt_md5"] for r in committed} < {r["ckpt_md5"] for r in rows}
    assert all(r["machine"] for r in rows)  # the committed runs get their machine's label
    assert json.loads((out / "summary.json").read_text())["runs"] == len(committed) + 1
    assert "Machine " in (out / "runs.md").read_text()


def test_a_run_directory_replaces_the_same_run_in_runs_csv(tmp_path):
    rob = _module()
    out = tmp_path / "robustness"
    out.mkdir()
    old = _row(machine="M", ckpt_md5="old")
    with (out / "runs.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(old))
        w.writeheader()
        w.writerow(old)
    (out / "runs" / "m-t2-s0").mkdir(parents=True)
    (out / "runs" / "m-t2-s0" / "row.json").write_text(json.dumps(_row(machine="M", ckpt_md5="new")))
    rows = rob._recorded(out)
    assert [r["ckpt_md5"] for r in rows] == ["new"]
    assert isinstance(rows[0]["seed"], int) and isinstance(rows[0]["revised"], float)


def test_set_overrides_coopvaebm_by_default_and_vae_with_its_prefix():
    rob = _module()
    sets = rob.parse_sets(["epochs=321", "vae:epochs=150", "ebm_optim.lr=0.004"])
    assert sets == [("coopvaebm", "epochs", 321), ("vae", "epochs", 150), ("coopvaebm", "ebm_optim.lr", 0.004)]
    methods = rob.run_params(7, sets)["datasets"]["digits"]["methods"]
    assert (methods["coopvaebm"]["epochs"], methods["vae"]["epochs"]) == (321, 150)
    assert methods["coopvaebm"]["ebm_optim"] == {"lr": 0.004, "beta1": 0.5}
    assert methods["coopvaebm"]["seeds"] == methods["vae"]["seeds"] == [7]
    assert methods["coopvaebm-noise"]["epochs"] != 321  # the YAML anchor's other users keep their value
    for bad, says in (("vae:epoch=3", "no such key in the digits vae section"),
                      ("gan:epochs=3", "method 'gan' is not one of"),
                      ("ebm_optim.lr.x=1", "no such key in the digits coopvaebm section"),
                      ("epochs", "expected [METHOD:]KEY=VALUE")):
        try:
            rob.run_params(0, rob.parse_sets([bad]))
        except SystemExit as e:
            assert says in str(e), (bad, str(e))
        else:
            raise AssertionError(f"--set {bad} was accepted")


def test_a_record_keeps_one_configuration(tmp_path):
    rob = _module()
    out = tmp_path / "candidate"
    out.mkdir()
    sets = rob.parse_sets(["epochs=200", "vae:epochs=200"])
    assert rob.record_config(out, sets, summarise=False) == {"coopvaebm:epochs": 200, "vae:epochs": 200}
    assert json.loads((out / "config.json").read_text())["overrides"] == {"coopvaebm:epochs": 200, "vae:epochs": 200}
    assert rob.record_config(out, sets, summarise=False)["vae:epochs"] == 200  # the same --set again: fine
    for other in ([], rob.parse_sets(["epochs=200"])):
        try:
            rob.record_config(out, other, summarise=False)
        except SystemExit as e:
            assert "--set coopvaebm:epochs=200 --set vae:epochs=200" in str(e) and "its own --out" in str(e)
        else:
            raise AssertionError(f"runs of {other} were let into a record of another configuration")
    assert rob.record_config(out, [], summarise=True) == {"coopvaebm:epochs": 200, "vae:epochs": 200}
    # the committed study has no config.json: its runs are params.yaml's, and a --set call may not join them
    committed = tmp_path / "committed"
    committed.mkdir()
    shutil.copy(ROOT / "benchmarks" / "robustness" / "runs.csv", committed / "runs.csv")
    assert rob.record_config(committed, [], summarise=False) == {}
    try:
        rob.record_config(committed, sets, summarise=False)
    except SystemExit as e:
        assert "made with no --set" in str(e)
    else:
        raise AssertionError("a --set run was let into the committed record")
    assert not (committed / "config.json").exists()


def test_machine_letters_are_the_same_in_every_record():
    rob = _module()
    later = [_row(machine="AMD EPYC, AVX-512 (2026-12-01)"), _row(machine="Z: another CPU (2030-01-01)", seed=1)]
    assert rob._machine_ids(later) == {rob.MACHINE_A: "A", "AMD EPYC, AVX-512 (2026-12-01)": "B",
                                       "Z: another CPU (2030-01-01)": "C"}
    md = rob._markdown(later, rob._summary(later))
    assert "| B | t2 | 0 |" in md and "Machine B: AMD EPYC" in md and "Machine A:" not in md
