"""How robust is the digits result? Train/sample/score over seeds × float perturbations; print the spread.

Each run is the digits chain of the pipeline (train coopvaebm and vae, sample, score: the same
``python -m pipeline`` commands the workflows run) in its own directory under ``--out``, with the
training seed of both methods set to the run's seed and an environment that changes the float
arithmetic the way another machine would:

  t2          OMP_NUM_THREADS=2 (the committed configuration on a 2-core machine)
  t1          OMP_NUM_THREADS=1 (another reduction order in every convolution and matmul)
  avx2        ATEN_CPU_CAPABILITY=avx2 (PyTorch's own kernels without AVX-512), 2 threads
  onednn-avx2 ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN convolutions without AVX-512), 2 threads
  t1-onednn-avx2  the same at 1 thread (two such runs share 2 cores without oversubscribing)

Prints one row per run (fd_digits of the Langevin-revised samples, of coopvaebm's own VAE samples,
of the vae baseline, and the md5 of the coopvaebm checkpoint, so a perturbation that changes no
byte is visible; the feature classifier and the real-data floor are also made under each
perturbation, as another machine would make them), then the distribution; writes ``runs.csv``, ``summary.json`` and ``fd.png`` to
``--out``. ``--set key=value`` overrides a digits coopvaebm hyperparameter (dotted, e.g.
``--set ebm_optim.lr=0.004``), ``--set vae:key=value`` one of the vae baseline (``--set vae:epochs=200``),
for exploring configurations; a configuration's runs belong in their own ``--out``.

    python benchmarks/robustness.py --seeds 0-9 --perturb t1 t2 --jobs 2
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import paths  # noqa: E402
from pipeline.atomic import write_json, write_text, write_with  # noqa: E402

PERTURB = {
    "t2": {"OMP_NUM_THREADS": "2"},
    "t1": {"OMP_NUM_THREADS": "1"},
    "avx2": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2"},
    "onednn-avx2": {"OMP_NUM_THREADS": "2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "t1-onednn-avx2": {"OMP_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
METHODS = ("coopvaebm", "vae")


# The first 13 runs (2026-11-28) were recorded before runs carried a machine label; they share one CPU
# model (their floors at one thread count agree to every digit), not the one of later sessions.
MACHINE_A = "2-core x86-64, AVX-512 (2026-11-28)"


def _this_machine() -> str:
    """CPU model name, whether it has AVX-512, and today's date: what tells one session's machine from another's."""
    model = "unknown CPU"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "no AVX-512"
    return f"{model}, {isa} ({time.strftime('%Y-%m-%d')})"


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def _override(cfg: dict, dotted: str, value, section: str = "coopvaebm") -> None:
    *keys, last = dotted.split(".")
    for k in keys:
        if not isinstance(cfg.get(k), dict):
            raise SystemExit(f"--set {dotted}: no such key in the digits {section} section of params.yaml")
        cfg = cfg[k]
    if last not in cfg:
        raise SystemExit(f"--set {dotted}: no such key in the digits {section} section of params.yaml")
    cfg[last] = value


def parse_sets(texts: list[str]) -> list[tuple[str, str, object]]:
    """``[METHOD:]KEY=VALUE`` strings as (method, dotted key, YAML value); the method defaults to coopvaebm."""
    out = []
    for text in texts:
        lhs, eq, value = text.partition("=")
        method, colon, key = lhs.rpartition(":")
        if not eq or not key:
            raise SystemExit(f"--set {text}: expected [METHOD:]KEY=VALUE, e.g. vae:epochs=200")
        method = method if colon else "coopvaebm"
        if method not in METHODS:
            raise SystemExit(f"--set {text}: method {method!r} is not one of {', '.join(METHODS)}")
        out.append((method, key, yaml.safe_load(value)))
    return out


def _pipeline(stages: list[tuple], work: Path, perturb: str) -> str | None:
    """Run ``python -m pipeline <stage> --dataset digits [--method M --seed K]`` in ``work``; the error, if any."""
    env = {**os.environ, **PERTURB[perturb], "PIPELINE_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    for stage, *run in stages:
        extra = ["--method", run[0], "--seed", str(run[1])] if run else []
        name = "-".join([stage, *map(str, run)])
        cmd = [sys.executable, "-m", "pipeline", stage, "--dataset", "digits", *extra, "--no-progress",
               "--log", f"logs/{name}.log"]
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            return f"{name}: {r.stderr.strip()[-400:]}"
    return None


def _classifier(perturb: str, out: Path) -> tuple[Path, float]:
    """The feature classifier and the real-data floor, made under the perturbation (as another machine would).

    Made anew on every machine (the directory is not committed): its floor differs between CPU models.
    """
    work = out / f"classifier-{perturb}"
    metrics = work / paths.metrics("digits", "real")
    if not metrics.exists():
        if work.exists():
            shutil.rmtree(work)
        (work / "data").mkdir(parents=True)
        os.symlink(ROOT / "data" / "prepared", work / "data" / "prepared")
        shutil.copy(ROOT / "params.yaml", work / "params.yaml")
        err = _pipeline([("classifier",), ("score-real",)], work, perturb)
        if err:
            raise SystemExit(f"classifier under {perturb} failed: {err}")
    return work / "models" / "digits" / "classifier.pt", json.loads(metrics.read_text())["fd_digits"]


def _slug(machine: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in machine).strip("-").lower()


def run_params(seed: int, sets: list[tuple[str, str, object]]) -> dict:
    """The project's params.yaml as one run sees it: both methods trained at ``seed``, ``sets`` applied."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for m in METHODS:  # the run's training seed must be one of the method's seeds
        params["datasets"]["digits"]["methods"][m]["seeds"] = [seed]
    for m, k, v in sets:
        _override(params["datasets"]["digits"]["methods"][m], k, v, m)
    return params


def _run(seed: int, perturb: str, out: Path, sets: list[tuple[str, str, object]], methods: tuple[str, ...],
         machine: str) -> dict:
    clf, floor = _classifier(perturb, out)
    work = out / "runs" / f"{_slug(machine)}-{perturb}-s{seed}"
    done = work / "row.json"
    if done.exists() and "error" not in json.loads(done.read_text()):
        return json.loads(done.read_text())
    if work.exists():
        shutil.rmtree(work)
    (work / "data").mkdir(parents=True)
    (work / "models" / "digits").mkdir(parents=True)
    os.symlink(ROOT / "data" / "prepared", work / "data" / "prepared")
    os.symlink(clf, work / "models" / "digits" / "classifier.pt")
    (work / "params.yaml").write_text(yaml.safe_dump(run_params(seed, sets), sort_keys=False))
    t0 = time.perf_counter()
    err = _pipeline([(stage, m, seed) for m in methods for stage in ("train", "sample", "score")], work, perturb)
    if err:
        row = {"machine": machine, "seed": seed, "perturb": perturb, "error": err}
        write_json(done, row)
        return row
    metrics = {m: json.loads((work / paths.metrics("digits", m, seed)).read_text()) for m in methods}
    ckpt = work / paths.checkpoint("digits", "coopvaebm", seed)
    row = {"machine": machine, "seed": seed, "perturb": perturb, "minutes": round((time.perf_counter() - t0) / 60, 2),
           "revised": metrics["coopvaebm"]["fd_digits"], "vae_own": metrics["coopvaebm"]["fd_digits_vae"],
           "vae_baseline": metrics["vae"]["fd_digits"] if "vae" in metrics else None, "floor": floor,
           "ckpt_md5": hashlib.md5(ckpt.read_bytes()).hexdigest()[:12]}
    write_json(done, row)
    for d in ("models", "state"):  # keep the scores, not the 1-MB checkpoints and samples of every run
        shutil.rmtree(work / d, ignore_errors=True)
    for f in (work / "results" / "digits").glob("*/seed*/samples.npz"):
        f.unlink()
    return row


def _from_csv(row: dict) -> dict:
    """A runs.csv line back as the row ``_run`` wrote (numbers as numbers, empty cells dropped)."""
    out: dict = {}
    for k, v in row.items():
        if v in ("", None):
            continue
        out[k] = v if k in ("machine", "perturb", "ckpt_md5", "error") else (int(v) if k == "seed" else float(v))
    return out


def _recorded(out: Path) -> list[dict]:
    """Every run recorded under ``out``: the committed ``runs.csv`` and the run directories of this machine.

    The run directories (``runs/<perturb>-s<seed>/row.json``) are not committed, so a fresh clone knows
    the earlier runs only from ``runs.csv``; a run directory wins where both hold the same run.
    """
    rows: dict[tuple, dict] = {}
    csv_path = out / "runs.csv"
    if csv_path.exists():
        with csv_path.open(newline="") as f:
            for r in csv.DictReader(f):
                r = {"machine": MACHINE_A, **_from_csv(r)}
                rows[_key(r)] = r
    for f in sorted((out / "runs").glob("*/row.json")):
        r = json.loads(f.read_text())
        rows[_key(r)] = r
    return sorted(rows.values(), key=_key)


def _key(row: dict) -> tuple[str, str, int]:
    """A run is (machine, perturbation, seed): the same seed and perturbation on another CPU is another run."""
    return (row.get("machine", MACHINE_A), row["perturb"], row["seed"])


def record_config(out: Path, sets: list[tuple[str, str, object]], summarise: bool) -> dict:
    """The ``--set`` overrides of the record under ``out`` (``config.json``); refuses to mix configurations.

    The first call that runs anything in an empty ``out`` writes ``config.json``; a record without one
    (the committed study) holds runs of params.yaml as it is. A later call must set the same overrides,
    so one record never mixes two configurations; ``--summarise`` reads them and sets nothing.
    """
    want = {f"{m}:{k}": v for m, k, v in sets}
    path = out / "config.json"
    if path.exists():
        have = json.loads(path.read_text())["overrides"]
    elif summarise or _recorded(out):
        have = {}
    else:
        write_json(path, {"overrides": want})
        return want
    if not summarise and have != want:
        def show(o: dict) -> str:
            return " ".join(f"--set {k}={v}" for k, v in o.items()) or "no --set"

        raise SystemExit(f"{out} records runs made with {show(have)}; this call has {show(want)}. "
                         "Give this configuration its own --out, or repeat the record's --set.")
    return have


def _summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    out: dict = {"runs": len(rows), "failed": len(rows) - len(ok)}
    for k in ("revised", "vae_own", "vae_baseline", "floor"):
        vals = [r[k] for r in ok if r.get(k) is not None]
        if vals:
            out[k] = {"mean": statistics.mean(vals), "std": statistics.pstdev(vals), "min": min(vals),
                      "max": max(vals), "median": statistics.median(vals)}
    both = [r for r in ok if r.get("vae_baseline") is not None]
    out["revision_improves_vae"] = sum(r["revised"] < r["vae_own"] for r in ok)
    out["beats_vae_baseline"] = sum(r["revised"] < r["vae_baseline"] for r in both)
    out["margin_own_min"] = min((r["vae_own"] - r["revised"] for r in ok), default=None)
    out["margin_baseline_min"] = min((r["vae_baseline"] - r["revised"] for r in both), default=None)
    if len(both) >= 2:
        out["mean_gate_fails"] = mean_gate_fails([r["revised"] - r["vae_baseline"] for r in both])
    return out


def mean_gate_fails(diffs: list[float], ks: tuple[int, ...] = (1, 3, 5, 8), draws: int = 200_000) -> dict[str, float]:
    """P(mean of k runs' (revised − vae) ≥ 0): how often a CI gate "coopvaebm beats vae on the mean of k
    trainings" would fail, resampling the recorded differences with replacement (fixed RNG)."""
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(0)
    return {str(k): float((d[rng.integers(0, len(d), size=(draws, k))].mean(axis=1) >= 0).mean()) for k in ks}


def _num(x: float | None) -> str:
    """Two decimals, or — where a run has no such value (--skip-vae runs have no baseline)."""
    return "—" if x is None else f"{x:.2f}"


def _markdown(rows: list[dict], summary: dict) -> str:
    """The runs and their distribution as markdown (docs/robustness.md quotes it)."""
    ok = [r for r in rows if "error" not in r]
    ids = _machine_ids(ok)
    lines = [] if not summary.get("overrides") else [
        "Configuration: params.yaml with " + ", ".join(f"`{k}={v}`" for k, v in summary["overrides"].items()), ""]
    lines += ["| machine | perturbation | seed | coopvaebm fd_digits (revised) | coopvaebm fd_digits (own VAE) "
             "| vae fd_digits | floor | checkpoint md5 |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in ok:
        lines.append(f"| {ids[_key(r)[0]]} | {r['perturb']} | {r['seed']} | {r['revised']:.2f} | {r['vae_own']:.2f} | "
                     f"{_num(r['vae_baseline'])} | {r['floor']:.3f} | `{r['ckpt_md5']}` |")
    present = {_key(r)[0] for r in ok}
    lines += [""] + [f"Machine {i}: {m}." for m, i in ids.items() if m in present]
    lines += ["", "| | mean ± std | min | median | max |", "|---|---|---|---|---|"]
    for k, label in (("revised", "coopvaebm (revised)"), ("vae_own", "coopvaebm (own VAE)"),
                     ("vae_baseline", "vae baseline"), ("floor", "real test split (floor)")):
        d = summary.get(k)
        if d:
            lines.append(f"| {label} | {d['mean']:.2f} ± {d['std']:.2f} | {d['min']:.2f} | {d['median']:.2f} | "
                         f"{d['max']:.2f} |")
    n = len(ok)
    lines += ["", f"Revision improves the VAE's own samples in {summary['revision_improves_vae']} of {n} runs "
              f"(smallest margin {_num(summary['margin_own_min'])}); beats the vae baseline in "
              f"{summary['beats_vae_baseline']} of {n} (smallest margin {_num(summary['margin_baseline_min'])})."]
    if "mean_gate_fails" in summary:
        lines += ["", "A gate \"coopvaebm beats vae on the mean of k trainings\" would fail with probability "
                  + ", ".join(f"{100 * p:.1f}% (k = {k})" for k, p in summary["mean_gate_fails"].items())
                  + " (the recorded differences resampled with replacement)."]
    return "\n".join(lines) + "\n"


def _machine_ids(rows: list[dict]) -> dict[str, str]:
    """Machines by their first letter A, B, ... in the order of their labels (the table's short column).

    MACHINE_A is always A, so a record of later machines only (a candidate configuration's) names them
    as the committed study does.
    """
    return {m: chr(ord("A") + i) for i, m in enumerate(sorted({MACHINE_A} | {_key(r)[0] for r in rows}))}


def _plot(rows: list[dict], path: Path, overrides: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    keys = [("revised", "coopvaebm (revised)"), ("vae_own", "coopvaebm (own VAE)"), ("vae_baseline", "vae baseline")]
    ids = _machine_ids(ok)
    perturbs = sorted({(ids[_key(r)[0]], r["perturb"]) for r in ok})
    for i, (k, label) in enumerate(keys):
        for j, p in enumerate(perturbs):
            vals = [r[k] for r in ok if (ids[_key(r)[0]], r["perturb"]) == p and r.get(k) is not None]
            x = [i + (j - (len(perturbs) - 1) / 2) * min(0.18, 0.8 / len(perturbs))] * len(vals)
            ax.scatter(x, vals, s=14, alpha=0.8, label=f"{p[0]} {p[1]}" if i == 0 else None, color=f"C{j}",
                       marker="os^D"[ord(p[0]) % 4])
    ax.set_xticks(range(len(keys)), [label for _, label in keys], fontsize=8)
    ax.set_ylabel("fd_digits (lower is better)", fontsize=8)
    config = ", ".join(f"{k}={v}" for k, v in (overrides or {}).items())
    ax.set_title(f"digits: {len(ok)} runs (seeds × perturbations)" + (f"; {config}" if config else ""), fontsize=9)
    ax.legend(fontsize=6, title="machine, perturbation", title_fontsize=6)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically, without the version stamp (same bytes on every rerun)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0-9", help="training seeds, e.g. 0-9 or 0,3,5 (default: %(default)s)")
    p.add_argument("--perturb", nargs="+", default=["t1", "t2"], choices=sorted(PERTURB),
                   help="float perturbations to run each seed under (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (t1 runs use one core each)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "robustness",
                   help="directory for runs/, runs.csv, summary.json, fd.png (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a digits hyperparameter of coopvaebm, or of vae with the prefix vae: "
                        "(YAML value), e.g. ebm_optim.lr=0.004 or vae:epochs=200")
    p.add_argument("--skip-vae", action="store_true", help="train only coopvaebm (exploring its configuration)")
    p.add_argument("--machine", default=_this_machine(),
                   help="label of this machine in the record (default: CPU model, ISA and date: %(default)s)")
    p.add_argument("--summarise", action="store_true", help="run nothing: rewrite the tables from the recorded runs")
    args = p.parse_args(argv)
    args.out = args.out.resolve()  # runs link to the classifier by absolute path
    if not args.summarise and not (ROOT / "data/prepared/digits.npz").exists():
        print("data/prepared/digits.npz not found: run `python -m pipeline prepare --dataset digits` first",
              file=sys.stderr)
        return 1
    sets = parse_sets(args.set)
    run_params(0, sets)  # a misspelt key fails now, not in the first run's worker
    overrides = record_config(args.out, sets, args.summarise)
    for q in [] if args.summarise else args.perturb:  # before the pool: one classifier per perturbation
        _classifier(q, args.out)
    methods = ("coopvaebm",) if args.skip_vae else METHODS
    # Seed-major order: runs stopped early still cover every perturbation evenly.
    done = {_key(r) for r in _recorded(args.out) if "error" not in r}
    jobs = [] if args.summarise else [(s, q) for s in _seeds(args.seeds) for q in args.perturb
                                      if (args.machine, q, s) not in done]
    if done and not args.summarise:
        print(f"{len(done)} runs already recorded under {args.out} (runs.csv or runs/): not rerun", flush=True)
    rows = []
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(_run, s, q, args.out, sets, methods, args.machine): (s, q) for s, q in jobs}
        for f in cf.as_completed(futs):
            row = f.result()
            rows.append(row)
            print(json.dumps(row), flush=True)
    rows = _recorded(args.out)
    buf = io.StringIO()
    fields = ["machine", "perturb", "seed", "revised", "vae_own", "vae_baseline", "floor", "ckpt_md5", "minutes", "error"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(args.out / "runs.csv", buf.getvalue())
    summary = {"overrides": overrides, **_summary(rows)}
    write_json(args.out / "summary.json", summary)
    write_text(args.out / "runs.md", _markdown(rows, summary))
    _plot(rows, args.out / "fd.png", overrides)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
