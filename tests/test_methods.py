"""Each method's update against a hand-written expectation on tiny tensors, and completion's clamp.

The nets are the real ones at width 2 on 8x8 images; the expectations are written out here from the
methods' definitions (short-run EBM: chains from U[-1, 1]; CoopNets: the generator regressed on x̂
with the same z; the Langevin step x - δ²/2 (x/σ² - ∂f/∂x)), not by calling the code under test.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.experiments import complete, visible_mask
from pipeline.nets import build_models
from pipeline.teaching import STEPS, TF1Adam, make_trainer, teaching_step

NETS = {"ebm_width": 2, "enc_width": 2, "gen_width": 2, "z_dim": 3, "init_std": 0.05}
LANGEVIN = {"step_size": 0.3, "ref_sigma": 1.0, "train_steps": 1, "test_steps": 2, "noise": False}
CFG = {"n_chains": 4, "ebm_optim": {"lr": 0.01, "beta1": 0.5}, "gen_optim": {"lr": 0.01, "beta1": 0.5},
       "vae_optim": {"lr": 0.01, "beta1": 0.5}, "lr_decay": {"rate": 1.0, "every_epochs": 1},
       "noise_init": {"low": -1.0, "high": 1.0}, "langevin": LANGEVIN, "kl_weight": 1.0, "seed": 5}


def _setup(method: str):
    torch.manual_seed(0)
    models = build_models(1, 8, NETS)
    keep = {"ebm": ("ebm",), "coopnets": ("ebm", "decoder")}.get(method, ("ebm", "encoder", "decoder"))
    models = {k: v for k, v in models.items() if k in keep}
    tr = make_trainer(method, models, CFG, torch.device("cpu"))
    return tr, {k: copy.deepcopy(v) for k, v in models.items()}


def _langevin_by_hand(ebm, x: torch.Tensor) -> torch.Tensor:
    """One official step: x - δ²/2 (x/σ² - ∂Σf/∂x)."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ebm(x).sum(), x)
    d, s = LANGEVIN["step_size"], LANGEVIN["ref_sigma"]
    return (x - 0.5 * d * d * (x / s**2 - g)).detach()


def _adam_step(module, loss_fn, optim_cfg) -> None:
    opt = TF1Adam(module.parameters(), lr=optim_cfg["lr"], betas=(optim_cfg["beta1"], 0.999))
    opt.zero_grad()
    loss_fn().backward()
    opt.step()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=k)


def test_every_method_is_a_step_function():
    assert set(STEPS) == {"coopvaebm", "coopvaebm-noise", "vae", "ebm", "coopnets"}
    assert STEPS["coopvaebm-noise"] is teaching_step  # the same step; params langevin.noise true


def test_ebm_chains_start_from_uniform_noise_and_the_ebm_learns_from_them():
    tr, ref = _setup("ebm")
    x_data = torch.rand(4, 1, 8, 8) * 2 - 1
    gen = torch.Generator().manual_seed(CFG["seed"])  # the trainer's RNG, replayed
    x0 = torch.rand((4, 1, 8, 8), generator=gen) * 2 - 1  # U[-1, 1]
    assert x0.min() >= -1 and x0.max() <= 1 and x0.min() < -0.5 and x0.max() > 0.5
    x_hat = _langevin_by_hand(ref["ebm"], x0)
    stats = STEPS["ebm"](tr, x_data, CFG, NETS["z_dim"])
    _adam_step(ref["ebm"], lambda: ref["ebm"](x_hat).mean() - ref["ebm"](x_data).mean(), CFG["ebm_optim"])
    _same(tr.models["ebm"], ref["ebm"])
    torch.testing.assert_close(stats["revision_l2"], (x_hat - x0).flatten(1).norm(dim=1).mean())


def test_coopnets_regresses_the_revision_on_the_same_z():
    tr, ref = _setup("coopnets")
    x_data = torch.rand(4, 1, 8, 8) * 2 - 1
    z = torch.randn(4, NETS["z_dim"])
    with torch.no_grad():
        x_tilde = ref["decoder"](z)
    x_hat = _langevin_by_hand(ref["ebm"], x_tilde)  # on the EBM before its update
    stats = STEPS["coopnets"](tr, x_data, CFG, NETS["z_dim"], draws={"z": z})
    expected = (ref["decoder"](z) - x_hat).pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(stats["loss_gen"], expected.detach())
    _adam_step(ref["ebm"], lambda: ref["ebm"](x_hat).mean() - ref["ebm"](x_data).mean(), CFG["ebm_optim"])
    _adam_step(ref["decoder"], lambda: (ref["decoder"](z) - x_hat).pow(2).flatten(1).sum(1).mean(),
               CFG["gen_optim"])
    _same(tr.models["ebm"], ref["ebm"])
    _same(tr.models["decoder"], ref["decoder"])


def test_coopnets_without_revision_has_zero_loss_only_with_the_same_z():
    """0 Langevin steps: x̂ = g(z), so the loss on the same z is exactly 0 (another z would give > 0)."""
    tr, _ = _setup("coopnets")
    cfg = {**CFG, "langevin": {**LANGEVIN, "train_steps": 0}}
    stats = STEPS["coopnets"](tr, torch.rand(4, 1, 8, 8) * 2 - 1, cfg, NETS["z_dim"])
    assert stats["loss_gen"].item() == 0.0


def test_completion_keeps_the_visible_half_bit_exact():
    torch.manual_seed(0)
    models = build_models(1, 8, NETS)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    lv = {**LANGEVIN, "test_steps": 3}
    out = complete(models, x, lv, chunk=4)
    keep = visible_mask(x).expand_as(x)
    assert keep[:, :, :4].all() and not keep[:, :, 4:].any()
    for k in ("masked", "vae", "completed"):
        assert torch.equal(out[k][keep], x[keep]), k
    assert (out["masked"][~keep] == 0).all()
    assert not torch.equal(out["completed"][~keep], out["vae"][~keep])  # the hidden half was revised


@pytest.mark.parametrize("seed", [0])
def test_uniform_noise_bounds(seed):
    from pipeline.teaching import uniform_noise

    x = uniform_noise(1000, (1, 2, 2), {"low": -0.5, "high": 0.25}, torch.Generator().manual_seed(seed),
                      torch.device("cpu"))
    assert x.min() >= -0.5 and x.max() <= 0.25 and np.isclose(x.mean().item(), -0.125, atol=0.02)


@pytest.mark.slow
def test_every_baseline_runs_through_the_stages(tmp_path, monkeypatch):
    """train → sample → score of ebm, coopnets and coopvaebm-noise at seed 1, tiny, through the CLI."""
    import json
    from pathlib import Path

    import yaml

    from pipeline import paths
    from pipeline.__main__ import main

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    d = params["datasets"]["digits"]
    d["classifier"].update(epochs=1, min_accuracy=0.1)
    for cfg in d["methods"].values():
        cfg.update(epochs=1, log_every=5)
        if "n_chains" in cfg:
            cfg.update(n_chains=16)
            cfg["langevin"] = {**cfg["langevin"], "train_steps": 2, "test_steps": 2}
    d["sample"]["n_samples"] = 40
    d["score"].update(kid_subsets=5, kid_subset_size=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = ["--dataset", "digits", "--no-progress"]
        assert main(["prepare", *common]) == 0 and main(["classifier", *common]) == 0
        for method in ("ebm", "coopnets", "coopvaebm-noise"):
            for stage in ("train", "sample", "score"):
                assert main([stage, *common, "--method", method, "--seed", "1"]) == 0, (stage, method)
        assert main(["train", *common, "--method", "ebm", "--seed", "7"]) == 1  # not among its seeds
    finally:
        torch.set_num_threads(threads)
    for method in ("ebm", "coopnets", "coopvaebm-noise"):
        m = json.loads(paths.metrics("digits", method, 1).read_text())
        assert np.isfinite(m["fd_digits"]) and ("fd_digits_vae" in m) == (method != "ebm"), method
        with np.load(paths.samples("digits", method, 1)) as z:
            assert set(z.files) == ({"revised"} if method == "ebm" else {"vae", "revised"}), method
        assert paths.checkpoint("digits", method, 1).is_file() and not paths.checkpoint("digits", method, 0).exists()
    ckpt = torch.load(paths.checkpoint("digits", "coopnets", 1), weights_only=True)
    assert set(ckpt["models"]) == {"ebm", "decoder"}  # CoopNets: no encoder
    assert set(torch.load(paths.checkpoint("digits", "ebm", 1), weights_only=True)["models"]) == {"ebm"}


def test_learning_rate_schedule_after_epoch_zero():
    """What the parity golden file cannot see (both its iterations are epoch 0): the official
    exponential_decay(lr, global_step = epoch, 20, 0.98), not staircase, stepped once per epoch."""
    from pipeline.teaching import lr_factor, train

    decay = {"rate": 0.98, "every_epochs": 20}
    assert lr_factor(0, decay) == 1.0
    assert lr_factor(10, decay) == pytest.approx(0.98**0.5, rel=1e-15)  # smooth, not 0.98**0 (staircase)
    assert lr_factor(40, decay) == pytest.approx(0.98**2, rel=1e-15)
    torch.manual_seed(0)
    models = {k: v for k, v in build_models(1, 8, NETS).items() if k != "ebm"}
    cfg = {**CFG, "lr_decay": decay, "epochs": 3, "batch_size": 2, "log_every": 1, "checkpoint_every": 100}
    tr = make_trainer("vae", models, cfg, torch.device("cpu"))
    curves = train("vae", tr, torch.rand(6, 1, 8, 8) * 2 - 1, cfg, NETS["z_dim"], progress=False)
    assert len(curves) == 9  # 3 batches per epoch, logged after every iteration
    for row in curves:  # the lr an iteration trained with: its epoch's, for every batch of the epoch
        assert row["lr_vae"] == pytest.approx(0.01 * 0.98 ** (row["epoch"] / 20), rel=1e-12), row
