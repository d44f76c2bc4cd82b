"""fd_digits along one digits training: is the final checkpoint's score a snapshot of a fluctuating run?

Trains one run with the pipeline's own train stage (``pipeline.stages.train.train``: the same code and
bytes as ``python -m pipeline train``; a temporary directory holds its files), keeps a copy of the
nets every ``--every`` epochs, then samples each copy as the sample stage does (``sample.n_samples``
images, ``sample.seed``, the method's test-time Langevin steps) and scores it with torch-fidelity on
the digits classifier's features (Fréchet distance; KID is left out to keep the pass short).
The last row is the checkpoint the pipeline evaluates (its fd equals the score stage's).

    python benchmarks/epochs.py --seed 1 --perturb t2 --every 5 --out benchmarks/robustness/epochs/t2-s1.csv

``--perturb`` sets the float environment as ``benchmarks/robustness.py`` does (before torch loads);
``--set key=value`` overrides a hyperparameter of the method (dotted, as there).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from robustness import PERTURB, _override, save_figure  # noqa: E402  (torch-free: the environment is set first)

from pipeline.atomic import write_text  # noqa: E402


def _plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ep = [r["epoch"] for r in rows]
    if all(r.get("revised") is not None for r in rows):
        ax.plot(ep, [r["revised"] for r in rows], "o-", ms=3, label="revised (x̂)")
    if all(r.get("vae_own") is not None for r in rows):
        ax.plot(ep, [r["vae_own"] for r in rows], "s-", ms=3, label="proposal (x̃)")
    ax.set_yscale("log")  # early epochs score 10x the late ones
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("fd_digits (lower is better)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="coopvaebm", help="a digits method (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    p.add_argument("--perturb", default="t2", choices=sorted(PERTURB), help="float environment (default: %(default)s)")
    p.add_argument("--every", type=int, default=5, help="epochs between scored copies (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter of the method (YAML value), e.g. ebm_optim.lr=0.004")
    p.add_argument("--classifier", type=Path, default=ROOT / "models/digits/classifier.pt",
                   help="the digits feature classifier (default: %(default)s; make it with the classifier stage)")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (a PNG of the curve is written beside it)")
    p.add_argument("--plot-only", action="store_true", help="train nothing: redraw the PNG from the CSV at --out")
    args = p.parse_args(argv)
    title = f"{args.method} seed {args.seed}, {args.perturb} ({', '.join(args.set) or 'params.yaml'})"
    if args.plot_only:
        with args.out.open(newline="") as f:
            rows = [{k: (float(v) if v else None) for k, v in r.items()} for r in csv.DictReader(f)]
        _plot(rows, args.out.with_suffix(".png"), title)
        return 0
    os.environ.update(PERTURB[args.perturb])
    for need in (ROOT / "data/prepared/digits.npz", args.classifier):
        if not need.exists():
            print(f"{need} not found: run `python -m pipeline prepare --dataset digits` and `python -m pipeline "
                  "classifier --dataset digits` first (or pass --classifier)", file=sys.stderr)
            return 1

    import torch

    from pipeline.config import dataset_cfg
    from pipeline.data import load_prepared
    from pipeline.metrics import fidelity_scores
    from pipeline.sample import generate
    from pipeline.stages.checkpoints import models_from_states
    from pipeline.stages.common import arch_of
    from pipeline.stages.train import train

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    mcfg = params["datasets"]["digits"]["methods"][args.method]
    mcfg["seeds"] = [args.seed]
    for k, _, v in (s.partition("=") for s in args.set):
        _override(mcfg, k, yaml.safe_load(v), args.method)
    snaps: list[tuple[int, dict]] = []

    def keep(epoch: int, models: dict) -> None:
        if (epoch + 1) % args.every == 0 or epoch + 1 == mcfg["epochs"]:
            snaps.append((epoch + 1, {k: copy.deepcopy(m.state_dict()) for k, m in models.items()}))

    cwd = Path.cwd()
    work = Path(tempfile.mkdtemp(prefix="epochs-"))
    t0 = time.perf_counter()
    try:
        (work / "data").mkdir()
        os.symlink(ROOT / "data" / "prepared", work / "data" / "prepared")
        os.chdir(work)
        train(params, "digits", args.method, args.seed, progress=False, on_epoch_end=keep)
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    minutes = (time.perf_counter() - t0) / 60

    dcfg = dataset_cfg(params, "digits")
    data = load_prepared(ROOT / "data/prepared/digits.npz")
    arch = arch_of(data.x_train.shape, dcfg["nets"])
    scfg = dcfg["score"]
    rows = []
    for epoch, states in snaps:
        models = models_from_states(arch, states, torch.device("cpu"))
        gen = torch.Generator()
        gen.manual_seed(dcfg["sample"]["seed"])
        # as the sample stage: chains of n_chains with the test-time Langevin, or the VAE alone in batches
        out = generate(models, dcfg["sample"]["n_samples"], mcfg.get("n_chains", mcfg["batch_size"]), arch["z_dim"],
                       mcfg.get("langevin"), gen, progress=False, noise_init=mcfg.get("noise_init"),
                       image_shape=(arch["channels"], arch["size"], arch["size"]))
        fd = {k: fidelity_scores(v, data.x_train, str(args.classifier), kid_subsets=1, kid_subset_size=100,
                                 batch_size=scfg["batch_size"])["fd"] for k, v in out.items()}
        rows.append({"epoch": epoch, "revised": fd.get("revised"), "vae_own": fd.get("vae")})
        print(f"epoch {epoch:4d}: " + "  ".join(f"{k} {v:.3f}" for k, v in fd.items()), flush=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["epoch", "revised", "vae_own"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(args.out, buf.getvalue())
    _plot(rows, args.out.with_suffix(".png"), title)
    print(f"trained in {minutes:.1f} min; wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
