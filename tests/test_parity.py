"""Parity with the official code (tests/golden): passes as shipped, and catches each deviation it found."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from pipeline import nets, parity, teaching, tflayout

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def _failed(report: parity.Report) -> list[str]:
    return [r.quantity for r in report.failed]


def test_our_step_matches_the_official_code():
    report = parity.run(GOLDEN)
    assert not report.failed, parity.format_report(report)
    names = {r.quantity for r in report.rows}
    for q in ("iter0/x_tilde", "iter0/langevin_grad_step0", "iter0/x_hat", "iter0/des_loss", "iter0/vae_loss",
              "iter0 weight gradients", "iter0 weight changes (Adam)", "iter1/x_hat", "iter1 weight changes (Adam)",
              "iter0/act/gen_from_z", "iter1/act/enc_on_x_hat"):
        assert q in names
    assert sum(r.n for r in report.rows) > 1000
    # exactly the three generator biases that feed a batch norm are excluded, by the manifest's note
    assert sorted(e.split(":")[0] for e in report.excluded) == [
        f"VAE_generator/convt{i}/biases" for i in (2, 3, 4)]


def test_torch_adam_epsilon_is_caught():
    assert "iter0 weight changes (Adam)" in _failed(parity.run(GOLDEN, adam="torch"))


def test_learning_rate_of_epoch_zero_is_caught(monkeypatch):
    # The port's earlier schedule: rate^((epoch + 1) / every) — epoch 0 already decayed.
    monkeypatch.setattr(teaching, "lr_factor", lambda e, d: d["rate"] ** ((e + 1) / d["every_epochs"]))
    failed = _failed(parity.run(GOLDEN))
    assert "iter0/lr_des" in failed and "iter0/lr_vae" in failed


def test_symmetric_transposed_convolution_padding_is_caught(monkeypatch):
    """The port's earlier 3×3 stride-2 layer, ConvTranspose2d(padding=1, output_padding=1): one pixel off."""
    build = parity.build_models

    def old_build(channels, size, cfg):
        models = build(channels, size, cfg)
        old = models["decoder"][10]
        models["decoder"][10] = nn.ConvTranspose2d(old.in_channels, old.out_channels, 3, 2, 1, output_padding=1)
        return models

    monkeypatch.setattr(parity, "build_models", old_build)
    assert "iter0/x_tilde" in _failed(parity.run(GOLDEN))


def test_configuration_is_read_from_the_manifest(tmp_path):
    """Another Langevin step size in the manifest: our step uses it and no longer matches the recording."""
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    manifest["config"]["derived"]["delta1_des_step_size"] = 0.0021
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(GOLDEN / "official_step.npz", tmp_path / "official_step.npz")
    cfg = parity.golden_config(manifest)
    assert cfg["method"]["langevin"]["step_size"] == 0.0021 and cfg["method"]["langevin"]["train_steps"] == 15
    assert cfg["method"]["n_chains"] == 16 and cfg["method"]["batch_size"] == 8 and cfg["arch"]["size"] == 32
    assert "iter0/x_hat" in _failed(parity.run(tmp_path))


def test_weights_rule_is_parsed_not_evaluated():
    w = parity.rebuild_weight("np.random.RandomState(3).normal(0.0, 0.05, (2, 3)).astype(np.float32)")
    assert np.array_equal(w, np.random.RandomState(3).normal(0.0, 0.05, (2, 3)).astype(np.float32))
    with pytest.raises(parity.ParityError, match="cannot read init_rule"):
        parity.rebuild_weight("__import__('os').system('true')")


def test_tf_layout_round_trip():
    """TF arrays → our modules → TF layout gives the same arrays, for every trainable tensor."""
    models = nets.build_models(3, 32, {"ebm_width": 8, "enc_width": 8, "gen_width": 8, "z_dim": 5, "init_std": 0.1})
    rng = np.random.RandomState(0)
    fmap = tflayout.encoder_map_shape(models)
    tf_vars = {}
    for e in tflayout.TABLE:
        shape = tuple(dict(models[e.module].named_parameters())[e.param].shape)
        tf_shape = tflayout.to_tf(e, np.zeros(shape), fmap).shape
        tf_vars[e.tf + ":0"] = rng.standard_normal(tf_shape).astype(np.float32)
    assert tflayout.to_modules(tf_vars, models) == []
    for e in tflayout.TABLE:
        ours = dict(models[e.module].named_parameters())[e.param].detach().numpy()
        np.testing.assert_array_equal(tflayout.to_tf(e, ours, fmap), tf_vars[e.tf + ":0"])
    with pytest.raises(ValueError, match="des/conv1/kernel"):
        tflayout.to_modules({"des/conv1/kernel:0": np.zeros((3, 3, 3, 9), np.float32)}, models)


def test_same_padding_transposed_convolution_matches_tf_definition():
    """ConvTranspose2dSame: output o = Σ x[i]·w[o − i·s + pad_top], pad_top = TF's (k − s) // 2 (here 0 for 3×3/2)."""
    layer = nets.ConvTranspose2dSame(1, 1, 3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 10.0).reshape(1, 1, 3, 3))
        layer.bias.zero_()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1
    y = layer(x)
    assert y.shape == (1, 1, 8, 8)
    assert y[0, 0, :3, :3].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]  # TF's top-left, as recorded


def test_parity_cli(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "pipeline", "parity", "--out", str(tmp_path / "t.md")], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert "parity ok" in ok.stdout and "| iter0/x_hat |" in ok.stdout
    assert "excluded, as the manifest calls it non-reproducible" in ok.stdout
    assert (tmp_path / "t.md").read_text().startswith("| quantity |")
    bad = subprocess.run([sys.executable, "-m", "pipeline", "parity", "--adam", "torch"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "PARITY FAILED" in bad.stderr and "iter0 weight changes (Adam)" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "pipeline", "parity", "--golden", str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1 and "manifest.json not found" in missing.stderr
