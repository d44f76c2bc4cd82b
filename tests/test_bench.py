"""The benchmark's reference iteration and ours compute the same function; the bench CLI runs and prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.bench import count_flops, setup
from pipeline.config import load_params
from pipeline.nets import bn_fed_biases
from pipeline.reference import reference_step
from pipeline.teaching import teaching_step

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
    assert "measured peak (fp32 matmul)" in text
    for part in ("train iteration (ours)", "train iteration (reference)", "sample 20", "Inception features 4"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {part}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[4].replace(",", "")) > 0, line  # seconds, GFLOP
    assert "speed-up ours/reference:" in text


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
