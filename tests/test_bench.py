"""The benchmark's reference iteration and ours compute the same function; the bench CLI runs and prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bench import bench_train, count_flops, part_times, setup
from pipeline.config import load_params
from pipeline.nets import bn_fed_biases
from pipeline.reference import reference_step
from pipeline.teaching import PARTS, teaching_step

ROOT = Path(__file__).resolve().parents[1]


def _step_both(noise: bool) -> tuple[dict, dict, dict]:
    params = load_params(ROOT / "params.yaml")
    s = setup(params, "digits", torch.device("cpu"), chains=24, batch=16)
    s["cfg"]["langevin"]["noise"] = noise
    s["trainer"].generator.manual_seed(7)
    s["ref_gen"].manual_seed(7)
    before = {k: v.detach().clone() for k, v in s["ref_models"]["ebm"].state_dict().items()}
    ours = teaching_step(s["trainer"], s["x"], s["cfg"], s["z_dim"])
    ref = reference_step(s["ref_models"], s["ref_optims"], s["x_ref"], s["cfg"], s["z_dim"], s["ref_gen"])
    return s, {k: float(v) for k, v in ours.items()}, ref, before


@pytest.mark.parametrize("noise", [False, True])
def test_one_step_of_ours_equals_the_reference(noise):
    s, ours, ref, before = _step_both(noise)
    for key in ("loss_ebm", "loss_vae", "revision_l2"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
    assert ours["revision_l2"] > 0  # the Langevin revision moved the samples
    moved = 0.0
    for name in ("ebm", "encoder", "decoder"):
        a, b = s["trainer"].models[name].state_dict(), s["ref_models"][name].state_dict()
        assert a.keys() == b.keys()
        # Biases feeding a batch norm have exact gradient 0: float noise decides Adam's first step (±lr).
        skip = bn_fed_biases(s["trainer"].models["decoder"]) if name == "decoder" else set()
        assert name != "decoder" or skip  # the generator has such biases: the exclusion is not vacuous
        for k in a:
            if k in skip:
                continue
            # Adam's first step moves each weight by about lr·sign(grad), so a sign flip from float
            # reordering would show as a 2·lr difference: demand far less.
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{name}.{k}")
        if name == "ebm":
            moved = max(float((b[k] - before[k]).abs().max()) for k in b)
    assert moved > 1e-3  # the step did update the EBM (lr 0.009), so the comparison is not vacuous


def test_reference_differs_when_the_algorithm_differs():
    """The comparison above can fail: one Langevin step fewer in ours is caught."""
    s, _, _, _ = _step_both(False)
    params = load_params(ROOT / "params.yaml")
    t = setup(params, "digits", torch.device("cpu"), chains=24, batch=16)
    t["trainer"].generator.manual_seed(7)
    t["ref_gen"].manual_seed(7)
    cfg = {**t["cfg"], "langevin": {**t["cfg"]["langevin"], "train_steps": t["cfg"]["langevin"]["train_steps"] - 1}}
    ours = teaching_step(t["trainer"], t["x"], cfg, t["z_dim"])
    ref = reference_step(t["ref_models"], t["ref_optims"], t["x_ref"], t["cfg"], t["z_dim"], t["ref_gen"])
    assert float(ours["revision_l2"]) != pytest.approx(ref["revision_l2"], rel=1e-4)


def test_flop_count_matches_the_convolutions():
    """FlopCounterMode on a single conv equals 2·N·Cout·Hout·Wout·Cin·k² (the utilisation's numerator)."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    assert count_flops(lambda: conv(x)) == 2 * 2 * 8 * 5 * 5 * 3 * 9


def test_bench_cli_prints_figures():
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "--dataset", "digits", "--chains", "16", "--batch", "16",
         "--n-sample", "20", "--n-inception", "4", "--inception-batch", "4", "--warmup", "0", "--repeats", "2",
         "--parts", "train", "sample", "inception"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "kernel rates before (fp32): best" in text and "kernel rates after (fp32): best" in text
    for part in ("train iteration (ours)", "train iteration (reference)", "sample 20", "Inception features 4"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {part}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[4].replace(",", "")) > 0, line  # seconds, GFLOP
        assert 0 < float(cells[7].rstrip("%")) <= 250, line  # CPU use (OpenMP threads may spin past 100%)
    assert "speed-up ours/reference:" in text
    # the split: the official code's four parts, their seconds within the iteration, their GFLOP summing to it
    split = {}
    for ln in text.split("split of our training iteration")[1].split("split of sample")[0].splitlines():
        if ln.startswith("| ") and not ln.startswith("| part"):
            cells = [c.strip() for c in ln.strip("|").split("|")]
            split[cells[0]] = (float(cells[1]), float(cells[3].replace(",", "")))
    assert list(split) == [*PARTS, "whole iteration"]
    assert sum(t for t, _ in list(split.values())[:4]) <= split["whole iteration"][0]
    assert split["Langevin revision"][0] > 0
    assert sum(f for _, f in list(split.values())[:4]) == pytest.approx(split["whole iteration"][1], abs=0.2)
    assert "| Langevin revision |" in text.split("split of sample 20")[1]


def test_bf16_autocast_step_stays_close_to_fp32():
    """The bf16 switch changes only the nets' arithmetic: one step's losses stay near the fp32 ones."""
    params = load_params(ROOT / "params.yaml")
    out = {}
    for precision in ("fp32", "bf16"):
        s = setup(params, "digits", torch.device("cpu"), chains=24, batch=16, precision=precision)
        s["trainer"].generator.manual_seed(7)
        stats = teaching_step(s["trainer"], s["x"], s["cfg"], s["z_dim"])
        assert all(v.dtype == torch.float32 for v in stats.values())
        out[precision] = {k: float(v) for k, v in stats.items()}
    assert out["bf16"]["vae_rec"] == pytest.approx(out["fp32"]["vae_rec"], rel=0.05)
    assert out["bf16"]["revision_l2"] == pytest.approx(out["fp32"]["revision_l2"], rel=0.05)
    assert out["bf16"] != out["fp32"]  # the switch did change the arithmetic


def test_split_ranges_and_langevin_flops():
    """One profiled iteration has each part once; the Langevin FLOPs are input gradients only.

    Each step is one forward and one input-gradient backward of the EBM, 2 × its forward FLOPs; if the
    frozen EBM's weight gradients were computed too it would be 3 ×, and the split would show it.
    """
    params = load_params(ROOT / "params.yaml")
    s = setup(params, "digits", torch.device("cpu"), chains=8, batch=8)
    r = bench_train(s, torch.device("cpu"), warmup=0, repeats=2, reference=False)
    assert all(len(r["parts"][name]) == 2 for name in PARTS), r["parts"]  # once per timed run
    for i in range(2):
        assert sum(r["parts"][name][i] for name in PARTS) <= r["ours"][i]
    ebm = s["trainer"].models["ebm"]
    forward = count_flops(lambda: ebm(torch.zeros(8, 1, 16, 16).contiguous(memory_format=torch.channels_last)))
    steps = s["cfg"]["langevin"]["train_steps"]
    assert r["part_flops"]["Langevin revision"] == 2 * steps * forward
    assert r["part_flops"]["total"] == sum(r["part_flops"][name] for name in PARTS)
    assert r["part_flops"]["VAE update"] > 0


def test_part_times_reads_named_ranges():
    """part_times returns every occurrence of a named record_function range, in order, and nothing else."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for n in (1, 2):
            with record_function("outer"):
                torch.randn(1000 * n).sum()
        with record_function("other"):
            pass
    got = part_times(prof, ("outer", "missing"))
    assert len(got["outer"]) == 2 and all(t > 0 for t in got["outer"]) and got["missing"] == []


def test_bench_times_a_preset_on_the_mnist_nets():
    """--preset times params.yaml presets.<name>.coopvaebm on the dataset's own nets (Fashion-MNIST: the official
    mnist nets at 28x28); an unknown preset is refused with the presets' names."""
    params = load_params(ROOT / "params.yaml")
    official = params["presets"]["fashion-mnist-official"]["coopvaebm"]
    s = setup(params, "fashion-mnist", torch.device("cpu"), chains=4, batch=4, preset="fashion-mnist-official")
    assert s["x"].shape == (4, 1, 28, 28) and s["trainer"].models["ebm"].net_type == "mnist"
    assert s["cfg"]["langevin"] == official["langevin"] and s["cfg"]["vae_optim"] == official["vae_optim"]
    cmd = [sys.executable, "-m", "pipeline", "bench", "--dataset", "fashion-mnist", "--parts", "train",
           "--chains", "4", "--batch", "4", "--warmup", "0", "--repeats", "1", "--no-reference"]
    out = subprocess.run([*cmd, "--preset", "fashion-mnist-official"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "# bench fashion-mnist (preset fashion-mnist-official)" in out.stdout
    assert f"Langevin {official['langevin']['train_steps']} steps (train)" in out.stdout
    assert "| Langevin revision |" in out.stdout and "estimated wall time" not in out.stdout
    refused = subprocess.run([*cmd, "--preset", "no-such-preset"], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode == 2 and "fashion-mnist-official" in refused.stderr, refused.stderr
