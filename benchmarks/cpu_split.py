"""Process CPU seconds of each part of one CIFAR-10 training iteration: a split that survives a shared machine.

``python -m pipeline bench`` times wall seconds, which other processes on the same cores inflate. At one
thread the process's CPU seconds are nearly what an idle machine's wall seconds would be, so this
script runs the parts of ``pipeline.teaching.teaching_step`` one by one (the same calls, in the same order:
generator sample, Langevin revision, descriptor update, VAE update) and prints the CPU seconds of each,
the minor page faults and the system seconds per iteration. Compare two settings by running it twice,
interleaved (docs/benchmarks-speed.md):

    OMP_NUM_THREADS=1 PIPELINE_MALLOC=system .venv/bin/python benchmarks/cpu_split.py   # glibc's default policy
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cpu_split.py                          # pipeline/cpualloc.py
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench import setup  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.cpualloc import reuse_freed_memory  # noqa: E402
from pipeline.langevin import revise  # noqa: E402
from pipeline.precision import apply_precision  # noqa: E402
from pipeline.teaching import PARTS, learn_ebm, propose, vae_loss  # noqa: E402


def iteration(s: dict) -> dict[str, float]:
    """CPU seconds of each part of one iteration (teaching_step's calls, one by one)."""
    cfg, tr, x_data, z_dim = s["cfg"], s["trainer"], s["x"], s["z_dim"]
    lv, out = cfg["langevin"], {}
    t = time.process_time()

    def lap(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name], t = now - t, now

    x_tilde = propose(tr.models["decoder"], cfg["n_chains"], z_dim, tr.generator, x_data.device)
    lap(PARTS[0])
    x_hat = revise(tr.models["ebm"], x_tilde, lv["train_steps"], lv["step_size"], lv["ref_sigma"], lv["noise"],
                   tr.generator)
    lap(PARTS[1])
    learn_ebm(tr, cfg, x_hat, x_data)
    lap(PARTS[2])
    loss, _, _ = vae_loss(tr.models["encoder"], tr.models["decoder"], x_hat, cfg["kl_weight"], tr.generator)
    tr.optims["vae"].zero_grad(set_to_none=True)
    loss.backward()
    tr.optims["vae"].step()
    lap(PARTS[3])
    return out


def time_sample(s: dict, repeats: int, kept: bool) -> int:
    """Print the CPU seconds of drawing n_chains revised samples (one chunk), min over ``repeats`` after a warm-up."""
    from pipeline.sample import generate

    cfg, tr = s["cfg"], s["trainer"]

    def draw() -> float:
        t = time.process_time()
        generate(tr.models, cfg["n_chains"], cfg["n_chains"], s["z_dim"], cfg["langevin"], tr.generator, progress=False)
        return time.process_time() - t

    draw()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    runs = [draw() for _ in range(repeats)]
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"sample {cfg['n_chains']} ({cfg['langevin']['test_steps']} Langevin steps), {torch.get_num_threads()} "
          f"thread(s), freed memory kept: {kept}: {min(runs):.2f} CPU s (min of {repeats} after 1 warm-up), "
          f"{(r1.ru_minflt - r0.ru_minflt) / repeats:,.0f} minor page faults and "
          f"{(r1.ru_stime - r0.ru_stime) / repeats:.2f} s system time per draw")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--params", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    p.add_argument("--chains", type=int, help="override n_chains (default: the config's)")
    p.add_argument("--repeats", type=int, default=2, help="timed iterations after one warm-up (default 2)")
    p.add_argument("--sample", action="store_true",
                   help="time pipeline.sample.generate of n_chains images (test-time Langevin steps) instead")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    apply_precision("fp32")
    kept = reuse_freed_memory()
    s = setup(load_params(args.params), args.dataset, torch.device("cpu"), chains=args.chains)
    if args.sample:
        return time_sample(s, args.repeats, kept)
    iteration(s)  # warm-up
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    runs = [iteration(s) for _ in range(args.repeats)]
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{args.dataset}, n_chains {s['cfg']['n_chains']}, {torch.get_num_threads()} thread(s), freed memory kept: "
          f"{kept}; CPU seconds per part, min over {args.repeats} iterations after 1 warm-up:")
    for name in PARTS:
        print(f"  {name}: {min(r[name] for r in runs):.2f}")
    print(f"  iteration: {min(sum(r.values()) for r in runs):.2f}")
    print(f"  per iteration: {(r1.ru_minflt - r0.ru_minflt) / args.repeats:,.0f} minor page faults, "
          f"{(r1.ru_stime - r0.ru_stime) / args.repeats:.2f} s system time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
