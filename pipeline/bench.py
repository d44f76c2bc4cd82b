"""Speed benchmark: training iteration, Langevin sampling and Inception features, with FLOP-based utilisation.

Everything runs on random data of a dataset config's shape (no dataset or weight download needed):

* ``train``: one training iteration of ``pipeline.teaching.teaching_step`` (decoder sample, every
  Langevin step, EBM update, VAE update) and, in the same run, of ``pipeline.reference.reference_step``
  (the straightforward port); prints both and their ratio.
* ``sample``: ``pipeline.sample.generate`` of ``--n-sample`` images with the test-time Langevin steps.
* ``inception``: ``pipeline.inception.extract`` of ``--n-inception`` 32×32 images through all four feature
  kinds, with randomly initialised weights in the real file formats (the cost is real, the values are not).

The training iteration is also split into the official code's parts (generator sample, Langevin revision,
descriptor update, VAE update: the ``torch.profiler`` ranges ``pipeline.teaching.PARTS``), each with its
time (median over the timed runs, which then run under the profiler) and its FLOPs.

FLOPs come from ``torch.utils.flop_counter`` over one eager call (the Langevin steps count input gradients
only: the EBM's weights are frozen there). Utilisation is achieved FLOP/s over the fastest of three large
kernels measured in the same run, before and after the parts (``torch.matmul``, a 1×1 convolution and a
4×4 stride-2 convolution like the EBM's, all in the run's dtype): a kernel rate, not the hardware's peak,
and a change between the two measurements means the machine's load changed. "CPU use" is process CPU
seconds over threads × wall seconds: well under 100% on a CPU means other processes took the cores.
Each timing is the median of ``--repeats`` runs after ``--warmup`` runs, CUDA-synchronised on a GPU. On a
CPU the defaults take hours: try ``--n-sample 900 --n-inception 200`` (benchmarks/RESULTS.md has the
measured tables; docs/benchmarks-speed.md the split and what made it faster).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch

from pipeline.config import load_params
from pipeline.precision import apply_precision, describe

# Training-split sizes of the prepared datasets (pipeline/data/*.py): CIFAR-10 data_batch_1..5,
# SVHN train_32x32.mat, CelebA partition 0; digits: 1,257 of sklearn's 1,797 (test_fraction 0.3).
# Fashion-MNIST: the 60,000 training images of train-images-idx3-ubyte.
TRAIN_IMAGES = {"cifar10": 50_000, "svhn": 73_257, "celeba": 162_770, "digits": 1_257, "fashion-mnist": 60_000}
CHANNELS = {"digits": 1, "fashion-mnist": 1}
SIZES = {"fashion-mnist": 28}  # datasets whose prepare section names no resolution (fixed by the files)
PAPER = ("cifar10", "svhn", "celeba")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, label: str = "",
          cpu: list[float] | None = None, during: Callable[[], contextlib.AbstractContextManager] | None = None
          ) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (a progress bar when labelled).

    ``cpu``, when given, receives the process CPU seconds of each timed call; the timed calls run inside
    ``during()`` when given (the profiler of the split), the warm-up calls outside it.
    """
    from tqdm.auto import tqdm

    out = []
    bar = tqdm(total=warmup + repeats, desc=f"timing {label}", unit="run", disable=not label, leave=False)
    for _ in range(warmup):
        fn()
        bar.update()
    with during() if during else contextlib.nullcontext():
        for _ in range(repeats):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            out.append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.append(time.process_time() - c0)
            bar.update()
    bar.close()
    return out


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one eager call of ``fn`` (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Compiled nets (--compile) are counted as their eager selves: the algorithm's FLOPs.
    # Its per-module breakdown hooks every module's backward, which torch.autograd.grad (our Langevin
    # gradient) refuses ("A leaf node was passed to _will_engine_execute_node"); the total needs none of it.
    counter.mod_tracker = _GlobalOnly()
    with torch.compiler.set_stance("force_eager"), counter:
        fn()
    return int(counter.get_total_flops())


class _GlobalOnly:
    """Stand-in for FlopCounterMode's module tracker that files every FLOP under 'Global'."""

    parents = ("Global",)

    def __enter__(self) -> "_GlobalOnly":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def kernel_rates(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 10) -> dict:
    """FLOP/s of three large kernels in ``dtype`` on ``device`` (median over ``repeats``) and the best of them.

    ``matmul``: n×n @ n×n by ``torch.matmul``; ``conv1x1``: the same product as a 1×1 convolution of n
    channels over 64×64 pixels; ``conv4x4``: a 4×4 stride-2 convolution 128 → 256 channels, 16×16 → 8×8,
    the shape of the EBM's third layer. On CPUs matmul and convolution go to different libraries (MKL,
    oneDNN) with different code paths, so ``best``, the fastest, is what utilisation is measured against.
    It is a measured kernel rate, not the hardware's peak (docs/benchmarks-speed.md compares it with the
    fp32 FMA peak of this repository's CPU).
    """
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    flops = 2 * n**3
    mm = flops / statistics.median(timed(lambda: a @ b, device, warmup=2, repeats=repeats))
    x = torch.randn(1, n, 64, 64, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = b.reshape(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * n * n * 64 * 64  # a (4096×n) @ (n×n) product
    conv = conv_flops / statistics.median(
        timed(lambda: torch.nn.functional.conv2d(x, w), device, warmup=2, repeats=repeats))
    batch = 512 if device.type == "cuda" else 64
    x4 = torch.randn(batch, 128, 16, 16, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w4 = torch.randn(256, 128, 4, 4, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv4_flops = 2 * batch * 256 * 8 * 8 * 128 * 4 * 4
    conv4 = conv4_flops / statistics.median(
        timed(lambda: torch.nn.functional.conv2d(x4, w4, stride=2, padding=1), device, warmup=2, repeats=repeats))
    return {"matmul": mm, "conv1x1": conv, "conv4x4": conv4, "best": max(mm, conv, conv4)}


def part_times(prof: torch.profiler.profile, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Seconds of every occurrence of each named ``record_function`` range in a finished profile, in order
    (host ranges: on a CUDA device the timed runs synchronise at each part's edges, ``synced_parts``)."""
    out: dict[str, list[float]] = {name: [] for name in names}
    for e in prof.events():
        if e.name in out and e.device_type == torch.autograd.DeviceType.CPU:
            out[e.name].append(e.time_range.elapsed_us() / 1e6)
    return out


def split_rows(times: dict[str, list[float]], total: list[float], flops: dict[str, float], peak: float) -> list[str]:
    """The split table's rows: each part's median seconds, share of the iteration, GFLOP, TFLOP/s, of best kernel."""
    med_total = statistics.median(total)
    rows = []
    for name, t in [*times.items(), ("whole iteration", total)]:
        if not t:
            continue
        med = statistics.median(t)
        f = flops.get(name, float("nan")) if name != "whole iteration" else flops["total"]
        rows.append(f"| {name} | {med:.4g} | {100 * med / med_total:.1f}% | {f / 1e9:,.1f} | {f / med / 1e12:.3f} | "
                    f"{100 * f / med / peak:.1f}% |")
    return rows


def setup(params: dict, dataset: str, device: torch.device, *, chains: int | None = None, batch: int | None = None,
          precision: str = "fp32", compile_nets: bool = False, preset: str | None = None) -> dict:
    """Nets, trainer and random data for ``dataset``'s coopvaebm config, or for params.yaml
    ``presets.<preset>.coopvaebm`` on ``dataset``'s nets; ``chains``/``batch`` override it."""
    from pipeline.nets import build_models
    from pipeline.teaching import make_adam, make_trainer

    dcfg = params["datasets"][dataset]
    methods = params.get("presets", {}).get(preset, {}) if preset else dcfg.get("methods", {})
    if "coopvaebm" not in methods:
        where = f"presets.{preset}" if preset else f"datasets.{dataset}.methods"
        names = ", ".join(params.get("presets", {})) or "none"
        raise ValueError(f"bench: params.yaml {where} has no coopvaebm configuration to time; "
                         f"name one with --preset (presets in this file: {names})")
    cfg = copy.deepcopy(methods["coopvaebm"])
    cfg["seed"] = cfg.pop("seeds")[0]  # the first training seed: benchmarks time one run
    cfg["n_chains"] = chains or cfg["n_chains"]
    cfg["batch_size"] = batch or cfg["batch_size"]
    cfg["precision"] = precision
    size, channels = dcfg["prepare"].get("resolution", SIZES.get(dataset)), CHANNELS.get(dataset, 3)
    torch.manual_seed(cfg["seed"])
    base = build_models(channels, size, dcfg["nets"])
    ours = {k: copy.deepcopy(m).to(device, memory_format=torch.channels_last) for k, m in base.items()}
    if compile_nets:
        for m in ours.values():
            m.compile()
    ref = {k: copy.deepcopy(m).to(device) for k, m in base.items()}
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    x = torch.rand(cfg["batch_size"], channels, size, size, generator=gen, device=device) * 2 - 1
    # The same optimiser as ours (TF1's Adam): the benchmark compares the iteration's algorithm path.
    ref_optims = {"ebm": make_adam(ref["ebm"].parameters(), cfg["ebm_optim"]),
                  "vae": make_adam([*ref["encoder"].parameters(), *ref["decoder"].parameters()], cfg["vae_optim"])}
    return {"cfg": cfg, "z_dim": dcfg["nets"]["z_dim"], "trainer": make_trainer("coopvaebm", ours, cfg, device),
            "ref_models": ref, "ref_optims": ref_optims, "ref_gen": gen,
            "x": x.contiguous(memory_format=torch.channels_last), "x_ref": x.contiguous(),
            "size": size, "channels": channels}


def _profiler() -> torch.profiler.profile:
    """The split's record_function ranges, host side (on a GPU made real time by ``synced_parts``)."""
    return torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])


def bench_train(s: dict, device: torch.device, warmup: int, repeats: int, reference: bool = True,
                split: bool = True) -> dict:
    """Seconds (wall and CPU) per training iteration, ours and (optionally) the reference, FLOPs per iteration
    and, with ``split``, per part of ours (``pipeline.teaching.PARTS``; the timed runs then run under the profiler).
    """
    from pipeline.langevin import revise
    from pipeline.reference import reference_step
    from pipeline.teaching import PARTS, learn_ebm, propose, synced_parts, teaching_step

    cfg, z_dim, tr = s["cfg"], s["z_dim"], s["trainer"]

    def ours():
        teaching_step(tr, s["x"], cfg, z_dim)

    def ref():
        reference_step(s["ref_models"], s["ref_optims"], s["x_ref"], cfg, z_dim, s["ref_gen"])

    out: dict = {"ours_cpu": [], "reference_cpu": []}
    prof = _profiler() if split else None
    with synced_parts(split and device.type == "cuda"):  # the parts' real time on a GPU (pipeline.teaching.part)
        out["ours"] = timed(ours, device, warmup, repeats, "train iteration (ours)", out["ours_cpu"],
                            (lambda: prof) if split else None)
    if split:
        out["parts"] = part_times(prof, PARTS)
    if reference:
        out["reference"] = timed(ref, device, warmup, repeats, "train iteration (reference)", out["reference_cpu"])
    flop_cfg = {**cfg, "precision": "fp32"}  # the algorithm's FLOPs, whatever the arithmetic
    out["flops"] = count_flops(lambda: teaching_step(tr, s["x"], flop_cfg, z_dim))
    # FLOPs per part: the same calls as teaching_step, counted one by one; the VAE update is the rest.
    lv = cfg["langevin"]
    x_tilde = propose(tr.models["decoder"], cfg["n_chains"], z_dim, tr.generator, device)
    x_hat = x_tilde.clone()
    parts = {PARTS[0]: count_flops(lambda: propose(tr.models["decoder"], cfg["n_chains"], z_dim, tr.generator, device)),
             PARTS[1]: count_flops(lambda: revise(tr.models["ebm"], x_tilde, lv["train_steps"], lv["step_size"],
                                                  lv["ref_sigma"], lv["noise"], tr.generator)),
             PARTS[2]: count_flops(lambda: learn_ebm(tr, flop_cfg, x_hat, s["x"]))}
    parts[PARTS[3]] = out["flops"] - sum(parts.values())
    out["part_flops"] = {**parts, "total": out["flops"]}
    return out


def bench_sample(s: dict, device: torch.device, n: int, warmup: int, repeats: int, split: bool = True) -> dict:
    """Seconds (wall and CPU) to draw ``n`` revised samples (test-time steps, chunks of n_chains), FLOPs of one
    draw and, with ``split``, the seconds of its generator sample and Langevin revision ranges per draw."""
    from pipeline.sample import generate
    from pipeline.teaching import PARTS, autocast, synced_parts

    cfg, tr = s["cfg"], s["trainer"]

    def run(count: int = n) -> None:
        with autocast(cfg, device):
            generate(tr.models, count, cfg["n_chains"], s["z_dim"], cfg["langevin"], tr.generator, progress=False)

    flops_per_chunk = count_flops(lambda: run(min(n, cfg["n_chains"])))
    n_chunks = -(-n // cfg["n_chains"])
    cpu: list[float] = []
    prof = _profiler() if split else None
    with synced_parts(split and device.type == "cuda"):
        times = timed(run, device, warmup, repeats, f"sample {n}", cpu, (lambda: prof) if split else None)
    out = {"times": times, "cpu": cpu, "flops": flops_per_chunk * n_chunks}
    if split:  # per draw: the ranges of its chunks summed
        per_chunk = part_times(prof, PARTS[:2])
        out["parts"] = {k: [sum(v[i:i + n_chunks]) for i in range(0, len(v), n_chunks)] for k, v in per_chunk.items()}
    return out


def bench_inception(device: torch.device, n: int, batch_size: int, warmup: int, repeats: int) -> dict:
    """Seconds of ``pipeline.inception.extract`` over ``n`` random 32×32 images (random weights)."""
    from pipeline import inception

    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="bench-inception-") as tmp:
        weights = inception.write_random_weights(tmp)

        def run(imgs=images):
            inception.extract(imgs, weights, batch_size=batch_size, device=device, progress=False)

        cpu: list[float] = []
        times = timed(run, device, warmup, repeats, f"Inception features {n}", cpu)
        flops = count_flops(lambda: run(images[: min(n, batch_size)])) * (n / min(n, batch_size))
    return {"times": times, "cpu": cpu, "flops": flops}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _row(name: str, images: float, times: list[float], flops: float, peak: float, cpu: list[float]) -> str:
    med = statistics.median(times)
    tflops = flops / med / 1e12
    use = statistics.median(c / (torch.get_num_threads() * t) for c, t in zip(cpu, times)) if cpu else float("nan")
    return (f"| {name} | {med:.4g} | {min(times):.4g} | {images / med:,.1f} | {flops / 1e9:,.1f} | "
            f"{tflops:.3f} | {100 * flops / med / peak:.1f}% | {100 * use:.0f}% |")


def _rates_line(rates: dict, precision: str, when: str) -> str:
    return (f"kernel rates {when} ({precision}): best {rates['best'] / 1e12:.3f} TFLOP/s (torch.matmul "
            f"{rates['matmul'] / 1e12:.3f}, 1x1 convolution {rates['conv1x1'] / 1e12:.3f}, 4x4/2 convolution "
            f"{rates['conv4x4'] / 1e12:.3f})")


def main(argv: list[str] | None = None) -> int:
    from pipeline.cpualloc import reuse_freed_memory

    p = argparse.ArgumentParser(prog="python -m pipeline bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10", choices=sorted(TRAIN_IMAGES),
                   help="config whose nets and shapes are benchmarked (default: %(default)s, the paper's)")
    p.add_argument("--params", default="params.yaml", help="hyperparameter file (default: %(default)s)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--parts", nargs="+", default=["train", "sample", "inception"],
                   choices=["train", "sample", "inception"])
    p.add_argument("--preset", help="time params.yaml presets.PRESET's coopvaebm configuration on the dataset's nets "
                   "instead of the dataset's own methods (e.g. fashion-mnist-official)")
    p.add_argument("--chains", type=int, help="override n_chains (default: the config's; 900 for cifar10)")
    p.add_argument("--batch", type=int, help="override the data batch size (default: the config's)")
    p.add_argument("--n-sample", type=int, default=10_000, help="images drawn in the sample part (default 10,000)")
    p.add_argument("--n-inception", type=int, default=10_000, help="images in the inception part (default 10,000)")
    p.add_argument("--inception-batch", type=int, default=200, help="Inception batch size (default 200, as score)")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                   help="fp32: TF32 off; tf32: TF32 on (ours and the reference); bf16: ours under bf16 autocast "
                   "(the reference fp32, TF32 off); the kernel rates are measured in it (pipeline/precision.py)")
    p.add_argument("--compile", action="store_true", help="torch.compile our nets (nn.Module.compile)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference implementation")
    p.add_argument("--no-split", action="store_true",
                   help="time without the profiler and print no split of the iteration into its parts")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per part first (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per part; the median is reported (default 5)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")

    device = torch.device(args.device)
    params = load_params(args.params)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    switches = apply_precision(args.precision)  # the train stage's switches, so the timings are its
    kept = reuse_freed_memory()  # as the CLI's train and sample stages run (pipeline/cpualloc.py)
    split = not args.no_split
    preset = f" (preset {args.preset})" if args.preset else ""
    print(f"# bench {args.dataset}{preset}: device {device} ({_device_name(device)}), torch {torch.__version__}, "
          f"precision {args.precision}, compile {args.compile}, median of {args.repeats} after {args.warmup} warm-up")
    print(f"settings in force: {describe(switches)}; freed CPU memory kept (pipeline/cpualloc.py): {kept}")
    rates = [kernel_rates(device, dtype)]
    print(_rates_line(rates[0], args.precision, "before"))
    try:
        s = setup(params, args.dataset, device, chains=args.chains, batch=args.batch, precision=args.precision,
                  compile_nets=args.compile, preset=args.preset)
    except ValueError as exc:
        p.error(str(exc))
    cfg = s["cfg"]
    print(f"config: {s['channels']}x{s['size']}x{s['size']}, n_chains {cfg['n_chains']}, batch {cfg['batch_size']}, "
          f"Langevin {cfg['langevin']['train_steps']} steps (train) / {cfg['langevin']['test_steps']} (test)")
    r = r_s = r_i = None
    if "train" in args.parts:
        r = bench_train(s, device, args.warmup, args.repeats, reference=not args.no_reference, split=split)
    if "sample" in args.parts:
        r_s = bench_sample(s, device, args.n_sample, args.warmup, args.repeats, split=split)
    if "inception" in args.parts:
        r_i = bench_inception(device, args.n_inception, args.inception_batch, args.warmup, args.repeats)
    rates.append(kernel_rates(device, dtype))
    print(_rates_line(rates[1], args.precision, "after"))
    peak = max(x["best"] for x in rates)
    if min(x["best"] for x in rates) < 0.9 * peak:
        print("the kernel rates changed by more than 10% during the run: the machine's load changed, so the "
              "timings below are not those of an idle machine")
    print("\n| part | median s | min s | images/s | GFLOP | TFLOP/s | of best kernel | CPU use |")
    print("|---|---|---|---|---|---|---|---|")
    if r is not None:
        print(_row("train iteration (ours)", cfg["n_chains"], r["ours"], r["flops"], peak, r["ours_cpu"]))
        if "reference" in r:
            print(_row("train iteration (reference)", cfg["n_chains"], r["reference"], r["flops"], peak,
                       r["reference_cpu"]))
    if r_s is not None:
        print(_row(f"sample {args.n_sample} ({cfg['langevin']['test_steps']} Langevin steps)", args.n_sample,
                   r_s["times"], r_s["flops"], peak, r_s["cpu"]))
    if r_i is not None:
        print(_row(f"Inception features {args.n_inception} (4 kinds)", args.n_inception, r_i["times"],
                   r_i["flops"], peak, r_i["cpu"]))
    print("\nimages/s: synthesised images (n_chains per training iteration); FLOPs: torch.utils.flop_counter on "
          "our eager step (the reference does more work for the same result); of best kernel: achieved FLOP/s "
          "over the best kernel rate above; CPU use: process CPU seconds / (threads x wall seconds)")
    if r is not None and "parts" in r:
        print("\nsplit of our training iteration (torch.profiler ranges, median over the timed runs):\n")
        print("| part | median s | share | GFLOP | TFLOP/s | of best kernel |")
        print("|---|---|---|---|---|---|")
        print("\n".join(split_rows(r["parts"], r["ours"], r["part_flops"], peak)))
    if r_s is not None and "parts" in r_s:
        print(f"\nsplit of sample {args.n_sample} (torch.profiler ranges, median over the timed runs):\n")
        print("| part | median s | share |")
        print("|---|---|---|")
        total = statistics.median(r_s["times"])
        for name, t in r_s["parts"].items():
            if t:
                print(f"| {name} | {statistics.median(t):.4g} | {100 * statistics.median(t) / total:.1f}% |")
    if r is not None and "reference" in r:
        print(f"\nspeed-up ours/reference: {statistics.median(r['reference']) / statistics.median(r['ours']):.2f}x")
    if args.chains is None and args.batch is None and args.dataset in PAPER and not args.preset:  # the paper's nets and shapes
        per_image = {"sample": statistics.median(r_s["times"]) / args.n_sample if r_s is not None else None,
                     "inception": statistics.median(r_i["times"]) / args.n_inception if r_i is not None else None}
        ours = statistics.median(r["ours"]) if r is not None else None
        print("\nestimated wall time of the full reproduction of coopvaebm, from the figures above:")
        for ds in ("cifar10", "svhn", "celeba"):
            print("  " + estimate(params, ds, ours, per_image))
    return 0


def estimate(params: dict, dataset: str, iteration_s: float | None, per_image_s: dict) -> str:
    """One line: training (iterations × s/iteration), sampling and Inception scoring time for ``dataset``."""
    mc = params["datasets"][dataset]["methods"]["coopvaebm"]
    n_samples = params["datasets"][dataset]["sample"]["n_samples"]
    protocols = params["datasets"][dataset]["score"]["protocols"].values()
    # one Inception pass per reference set and conversion (the stage's feature groups), of the most images any needs
    groups: dict[tuple[str, str], int] = {}
    for p in protocols:
        key = (p["reference"], p["conversion"])
        groups[key] = max(groups.get(key, 0), p["n_reference"])
    n_ref = sum(groups.values())
    iters = mc["epochs"] * (TRAIN_IMAGES[dataset] // mc["batch_size"])
    parts = []
    if iteration_s is not None:
        parts.append(f"train {iters:,} it x {iteration_s:.4g} s = {iteration_s * iters / 86400:,.2f} days")
    if per_image_s["sample"] is not None:
        parts.append(f"sample {n_samples:,} = {per_image_s['sample'] * n_samples / 3600:,.2f} h")
    if per_image_s["inception"] is not None:
        # Inception passes: the reference once, then the revised and the VAE-only sample sets.
        n = n_ref + 2 * n_samples
        parts.append(f"Inception features of {n:,} images = {per_image_s['inception'] * n / 3600:,.2f} h")
    return f"{dataset}: " + "; ".join(parts)
