"""Measurements behind the parity rule (docs/parity.md): the factor K, and what the check still catches.

``--calibrate``: how large is error / rounding scale when both sides are correct float32
implementations? Besides ours against the official code, each of ``--extra`` further float32
replays of our step (inputs nudged by one ulp with other seeds, NCHW and nudged, one thread) plays
"another correct implementation": its error against our judged replay is measured against the
rounding scale of ``python -m pipeline parity`` (which does not see it). The largest such ratio is
what K must clear.

``--sensitivity``: for each kind of porting bug, the smallest relative deviation that the check
still catches, by bisection on log10(δ). Each probe replays our float32 step under the deviation
and judges it against the rounding scale measured once without it (a deviation of that size does
not change how the step rounds; the mutant tests in tests/test_parity_mutants.py run the full check
on mutated copies of the code). With ``--full-check`` the full ``parity.run`` is rerun at the
threshold ×3 (must fail) and ÷3 (must pass) as a check of the shortcut.

    python benchmarks/parity_study.py --calibrate --sensitivity --out benchmarks/parity
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pipeline import langevin, nets, parity, teaching  # noqa: E402
from pipeline.atomic import write_text  # noqa: E402


def _worst(rows: list[parity.Row]) -> parity.Row:
    return max(rows, key=lambda r: r.ratio / r.limit)


def _baseline(golden: Path) -> tuple[dict, dict, dict, dict, list]:
    manifest, g = parity.load_golden(golden)
    cfg = parity.golden_config(manifest)
    exact, _ = parity.replay(manifest, g, cfg, dtype=torch.float64, channels_last=False)
    replays = [parity.replay(manifest, g, cfg, **kw)[0] for kw in parity.REPLAYS.values()]
    return manifest, g, cfg, exact, replays


def calibrate(golden: Path, extra: int) -> tuple[str, dict]:
    manifest, g, cfg, exact, replays = _baseline(golden)
    ours = replays[0]
    rows_official = parity.judge(ours, exact, replays, g)
    others: dict[str, dict] = {f"nudged, seed {s}": {"nudge": s} for s in range(10, 10 + extra)}
    others["NCHW, nudged (seed 99)"] = {"channels_last": False, "nudge": 99}
    results = {"ours vs official": rows_official}
    for name, kw in others.items():
        other, _ = parity.replay(manifest, g, cfg, **kw)
        stand_in = {k: v.ours for k, v in other.items()}
        results[f"ours vs fp32 replay ({name})"] = parity.judge(ours, exact, replays, stand_in)
    # Other CPU kernels, as another CPU model would pick: our default path in a child process whose
    # float environment is set before torch loads (as benchmarks/robustness.py perturbs trainings).
    for name, env in OTHER_KERNELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "values.npz"
            subprocess.run([sys.executable, __file__, "--golden", str(golden), "--dump", str(dump)], check=True,
                           env={**os.environ, **env})
            with np.load(dump) as z:
                stand_in = {k: z[k] for k in z.files}
        results[f"ours vs our default path under {name}"] = parity.judge(ours, exact, replays, stand_in)
    lines = ["| comparison | largest error / scale (float quantities) | where | largest (exact, ≤ 1) |",
             "|---|---:|---|---:|"]
    summary = {}
    for name, rows in results.items():
        fl = [r for r in rows if r.kind == "float"]
        ex = [r for r in rows if r.kind == "exact"]
        w = max(fl, key=lambda r: r.ratio)
        we = max(ex, key=lambda r: r.ratio)
        summary[name] = {"float_max_ratio": w.ratio, "where": w.worst, "exact_max_ratio": we.ratio}
        lines.append(f"| {name} | {w.ratio:.3g} | {w.worst} | {we.ratio:.3g} |")
    stand_ins = [v["float_max_ratio"] for k, v in summary.items() if k != "ours vs official"]
    lines.append("")
    lines.append(f"largest ratio against the official code: {summary['ours vs official']['float_max_ratio']:.3g}; "
                 f"against the {len(stand_ins)} stand-in float32 implementations: {max(stand_ins):.3g} "
                 f"(median {float(np.median(stand_ins)):.3g}); K = {parity.K:g}")
    return "\n".join(lines), summary


OTHER_KERNELS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "oneDNN capped at AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ATen kernels at AVX2, 1 thread": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"},
}


def dump(golden: Path, out: Path) -> None:
    """Our default float32 replay's values, for a parent process to compare (``--calibrate``)."""
    manifest, g = parity.load_golden(golden)
    values, _ = parity.replay(manifest, g, parity.golden_config(manifest))
    np.savez(out, **{k: v.ours for k, v in values.items()})


# --------------------------------------------------------------------------------------------------
# Deviations, each a context manager taking δ (relative size) that patches the code for its duration.

@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _models_patch(edit: Callable[[dict], None]):
    build = parity.build_models

    def patched(channels, size, cfg):
        models = build(channels, size, cfg)
        edit(models)
        return models

    return _patched(parity, "build_models", patched)


def bn_eps(d: float):
    def edit(models):
        for m in models["decoder"]:
            if isinstance(m, nets.BatchNormNoScale):
                m.eps = m.eps * (1 + d)
    return _models_patch(edit)


def leaky_slope(d: float):
    def edit(models):
        for net in models.values():
            for m in net.modules():
                if isinstance(m, nn.LeakyReLU):
                    m.negative_slope = nets.LRELU * (1 + d)
    return _models_patch(edit)


def tconv_padding(d: float):
    """The 3×3/2 layer as (1 − δ)·TF 'SAME' + δ·PyTorch's symmetric padding=1, output_padding=1."""
    def edit(models):
        layer = next(m for m in models["decoder"] if isinstance(m, nets.ConvTranspose2dSame)
                     and m.kernel_size == (3, 3) and m.stride == (2, 2))
        same = layer.forward  # bound before the instance attribute below shadows it; parameters unchanged

        def blended(x):
            sym = F.conv_transpose2d(x, layer.weight, layer.bias, 2, 1, output_padding=1)
            return (1 - d) * same(x) + d * sym
        layer.forward = blended
    return _models_patch(edit)


def _langevin(drift: float, sigma2: float):
    def step(ebm, x, step_size, ref_sigma, noise=None, grads=None):
        x = x.detach().requires_grad_(True)
        (grad_f,) = torch.autograd.grad(ebm(x).sum(), x)
        if grads is not None:
            grads.append(grad_f.detach())
        with torch.no_grad():
            x_new = x - drift * step_size**2 * (x / (sigma2 * ref_sigma**2) - grad_f)
        return x_new.detach()
    return _patched(langevin, "langevin_step", step)


def drift_factor(d: float):
    return _langevin(0.5 * (1 + d), 1.0)


def sigma_squared(d: float):
    return _langevin(0.5, 1 + d)


def lr_schedule(d: float):
    factor = teaching.lr_factor
    return _patched(teaching, "lr_factor", lambda e, decay: factor(e, decay) * (1 + d))


def adam_eps(d: float):
    return _patched(teaching, "make_adam", lambda params, o: teaching.TF1Adam(params, lr=o["lr"],
                                                                                betas=(o["beta1"], 0.999),
                                                                                eps=1e-8 * (1 + d)))


def kl_weight(d: float):
    loss = teaching.vae_loss
    return _patched(teaching, "vae_loss", lambda enc, dec, x, w, *a, **k: loss(enc, dec, x, w * (1 + d), *a, **k))


@contextlib.contextmanager
def vae_samples(d: float):
    """The VAE learns from x̂ + δ·(x̃ − x̂): δ = 1 is learning from the proposals x̃."""
    seen: dict = {}
    revise, loss = teaching.revise, teaching.vae_loss

    def rev(ebm, x, *a, **k):
        seen["x_tilde"] = x
        return revise(ebm, x, *a, **k)

    def vl(enc, dec, x, *a, **k):
        return loss(enc, dec, x + d * (seen["x_tilde"] - x), *a, **k)

    with _patched(teaching, "revise", rev), _patched(teaching, "vae_loss", vl):
        yield


DEVIATIONS: dict[str, tuple[Callable, str, float]] = {
    # name: (patch, what δ scales, the mutant's δ in tests/test_parity_mutants.py)
    "BN ε": (bn_eps, "batch-norm ε 1e-3 → 1e-3·(1+δ)", 1e-5 / 1e-3 - 1),
    "Langevin drift factor": (drift_factor, "½δ² → ½(1+δ)·δ²", 1.0),
    "σ vs σ²": (sigma_squared, "x/σ² → x/((1+δ)σ²)", 0.016 - 1),
    "learning-rate schedule": (lr_schedule, "lr factor → (1+δ)·factor", 0.98 ** (1 / 20) - 1),
    "leaky-ReLU slope": (leaky_slope, "0.2 → 0.2·(1+δ)", 0.01 / 0.2 - 1),
    "Adam ε": (adam_eps, "TF1 ε 1e-8 → 1e-8·(1+δ) (torch's placement: δ = √(1−β2) − 1 at step 1)",
               math.sqrt(1 - 0.999) - 1),
    "transposed-conv padding": (tconv_padding, "3×3/2 layer: (1−δ)·TF 'SAME' + δ·symmetric padding", 1.0),
    "KL weight": (kl_weight, "w → w·(1+δ)", 1 / 2 - 1),
    "VAE learns from": (vae_samples, "x̂ → x̂ + δ·(x̃ − x̂)", 1.0),
}


def sensitivity(golden: Path, steps: int, full_check: bool, kinds: list[str] | None = None,
                previous: dict | None = None) -> tuple[str, dict]:
    manifest, g, cfg, exact, replays = _baseline(golden)

    def worst_at(patch, d: float) -> parity.Row:
        with patch(d):
            values, _ = parity.replay(manifest, g, copy.deepcopy(cfg))
        return _worst(parity.judge(values, exact, replays, g))

    def caught(row: parity.Row) -> bool:
        return row.ratio > row.limit

    header = ["| deviation | δ means | smallest |δ| caught | first quantity to fail there | the mutant's δ | "
              "mutant's error / scale | full check at 3× / ÷3 |", "|---|---|---:|---|---:|---:|---|"]
    lines: list[str] = []
    summary = dict(previous or {})
    for name, (patch, means, mutant_d) in DEVIATIONS.items():
        if kinds is not None and name not in kinds:
            continue
        t0 = time.time()
        sign = 1.0 if mutant_d > 0 else -1.0
        mutant = worst_at(patch, mutant_d)
        lo, hi = -9.0, math.log10(min(abs(mutant_d), 1.0))  # log10|δ|: lo passes (assumed), hi fails
        if not caught(worst_at(patch, sign * 10**hi)):
            lines.append(f"| {name} | {means} | not caught at {sign * 10**hi:.3g} | — | {mutant_d:.3g} | "
                         f"{mutant.ratio:.3g} | — |")
            summary[name] = {"smallest": None, "row": lines[-1]}
            continue
        for _ in range(steps):
            mid = (lo + hi) / 2
            if caught(worst_at(patch, sign * 10**mid)):
                hi = mid
            else:
                lo = mid
        d = sign * 10**hi
        at = worst_at(patch, d)
        checks = ["not run", "not run"]
        if full_check:
            checks = []
            for f in (3.0, 1 / 3):
                dd = sign * min(abs(d) * f, 1.0)
                with patch(dd):
                    rep = parity.run(golden)
                checks.append("fails" if rep.failed else "passes")
        lines.append(f"| {name} | {means} | {abs(d):.2g} | {at.worst} ({at.ratio:.3g} × scale) | {mutant_d:.3g} | "
                     f"{mutant.ratio:.3g} | {checks[0]} / {checks[1]} |")
        summary[name] = {"smallest": abs(d), "where": at.worst, "mutant_ratio": mutant.ratio, "full_check": checks,
                         "seconds": round(time.time() - t0, 1), "row": lines[-1]}
        print(lines[-1], flush=True)
    rows = [summary[n]["row"] for n in DEVIATIONS if n in summary]
    return "\n".join(header + rows), summary


def _previous(args) -> dict | None:
    """The sensitivity record already in --out (rows of the kinds a --kinds run does not redo)."""
    f = args.out / "sensitivity.json" if args.out else None
    return json.loads(f.read_text()) if args.kinds and f and f.is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden", type=Path, default=parity.DEFAULT_GOLDEN)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--sensitivity", action="store_true")
    ap.add_argument("--extra", type=int, default=8, help="nudged stand-in replays for --calibrate (default 8)")
    ap.add_argument("--steps", type=int, default=8, help="bisection steps on log10 δ (default 8)")
    ap.add_argument("--full-check", action="store_true",
                    help="--sensitivity: rerun the full check at 3x and 1/3 of each threshold (minutes per kind)")
    ap.add_argument("--kinds", nargs="+", choices=list(DEVIATIONS),
                    help="--sensitivity: only these deviations; rows of the others are kept from --out's record")
    ap.add_argument("--out", type=Path, help="directory for calibration.md / sensitivity.md (+ .json)")
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # --calibrate's child processes
    args = ap.parse_args()
    if args.dump:
        dump(args.golden, args.dump)
        return 0
    for flag, fn, name in ((args.calibrate, lambda: calibrate(args.golden, args.extra), "calibration"),
                           (args.sensitivity, lambda: sensitivity(
                               args.golden, args.steps, args.full_check, args.kinds, _previous(args)), "sensitivity")):
        if not flag:
            continue
        t0 = time.time()
        text, summary = fn()
        head = (f"golden: {args.golden.resolve().relative_to(ROOT) if args.golden.resolve().is_relative_to(ROOT) else args.golden}; "
                f"torch {torch.__version__}, {torch.get_num_threads()} threads; {time.time() - t0:.0f} s\n\n")
        print(head + text, flush=True)
        if args.out:
            write_text(args.out / f"{name}.md", head + text + "\n")
            write_text(args.out / f"{name}.json", json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
