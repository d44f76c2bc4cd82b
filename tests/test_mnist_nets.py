"""The official mnist nets (pipeline.mnist_nets): shapes and parameters as the official graph's, TF's
SAME padding, and the encoder's dropout: TF's rule, in every call, drawn from the run's generator."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import experiments, mnist_nets, nets, tflayout
from pipeline.config import ConfigError, load_params, validate
from pipeline.teaching import make_trainer, teaching_step

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "mnist"
OFFICIAL = {"type": "mnist", "ebm_width": 64, "enc_width": 64, "gen_width": 64, "z_dim": 100, "init_std": 0.005}
SMALL = {**OFFICIAL, "ebm_width": 8, "enc_width": 8, "gen_width": 8, "z_dim": 6}


def _manifest() -> dict:
    return json.loads((GOLDEN / "manifest.json").read_text())


def test_official_nets_have_the_official_graph_variables():
    """Every one of the 29 TF variables has its place, shape and size in our nets, and nothing else is there."""
    torch.manual_seed(0)
    models = nets.build_models(1, 28, OFFICIAL)
    variables = _manifest()["variables"]
    fmap = tflayout.encoder_map_shape(models)
    assert fmap == (64, 7, 7)
    entries = tflayout.by_tf("mnist")
    assert len(variables) == len(entries) == 29
    for v in variables:
        e = entries[tflayout.tf_name(v["name"])]
        ours = dict(models[e.module].named_parameters())[e.param]
        assert tflayout.to_tf(e, np.zeros(tuple(ours.shape)), fmap).shape == tuple(v["shape"]), v["name"]
    n_official = sum(int(np.prod(v["shape"])) for v in variables)
    assert sum(p.numel() for m in models.values() for p in m.parameters()) == n_official == 3_164_589
    # the layout table covers every parameter once: a full set of TF arrays maps with nothing left over
    tf_vars = {v["name"]: np.zeros(v["shape"], np.float32) for v in variables}
    assert tflayout.to_modules(tf_vars, models) == []


def test_shapes_through_the_nets():
    torch.manual_seed(0)
    m = nets.build_models(1, 28, SMALL)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert m["ebm"](x).shape == (3,)
    # the energy is the sum of the fc conv's 100 outputs
    assert m["ebm"][6](m["ebm"][:6](x)).shape == (3, mnist_nets.FC_CHANNELS, 1, 1)
    torch.testing.assert_close(m["ebm"](x), m["ebm"][:7](x).flatten(1).sum(1))
    mean, logstd = m["encoder"](x, generator=g)
    assert mean.shape == logstd.shape == (3, 6)
    with torch.no_grad():
        y = m["decoder"](torch.randn(3, 6))
    assert y.shape == (3, 1, 28, 28) and float(y.abs().max()) <= 1
    assert [type(a).__name__ for a in m["decoder"] if isinstance(a, (torch.nn.ReLU, torch.nn.LeakyReLU))] == ["ReLU"] * 3
    with pytest.raises(ValueError, match="28×28"):
        nets.build_models(1, 32, SMALL)
    with pytest.raises(ValueError, match="nets.type 'conv'"):
        nets.build_models(1, 28, {**SMALL, "type": "conv"})


def test_tf_same_padding_as_the_manifest_lists_it():
    """TF's SAME split (top/left, bottom/right) of every conv layer the manifest lists, asymmetric ones included."""
    layers = [la for la in _manifest()["tf_same_padding"]["layers"] if la["op"] == "conv2d" and la["tf_padding"] == "SAME"]
    assert len(layers) == 6
    for la in layers:
        assert mnist_nets.tf_same_pads(la["in_size"], la["kernel"], la["stride"]) == (
            la["tf_pad_top_left"], la["tf_pad_bottom_right"]), la["layer"]
    # Conv2dSame puts the extra pixel at the bottom/right: a 1 at the top-left corner of a 7×7 image,
    # 4×4 kernel of ones, stride 1, pads 1 | 2: reaches outputs (0..1, 0..1) only.
    layer = mnist_nets.Conv2dSame(1, 1, 4, 1)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 0, 0] = 1
    y = layer(x)[0, 0]
    assert y.shape == (7, 7) and torch.nonzero(y).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_dropout_rule_is_tf_s():
    """keep where u ≥ float32(0.2) (u = float32(0.2) kept, the float32 below it dropped), kept × 1.25;
    the gradient passes through kept elements only, times 1.25."""
    t = np.float32(0.2)
    u = torch.tensor([float(np.nextafter(t, np.float32(0))), float(t), 0.9, 0.0])
    x = torch.tensor([1.0, 2.0, -4.0, 3.0], requires_grad=True)
    y = mnist_nets.tf_dropout(x, u)
    assert y.tolist() == [0.0, 2.5, -5.0, 0.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.25, 1.25, 0.0]
    assert mnist_nets.DROP_THRESHOLD == 0.20000000298023224 and mnist_nets.DROP_SCALE == 1.25
    dropout = _manifest()["encoder_dropout"]["dropouts"][0]["graph_constants"]
    assert dropout["GreaterEqual_y"]["value"] == mnist_nets.DROP_THRESHOLD
    assert dropout["Mul_scale"]["value"] == mnist_nets.DROP_SCALE


def test_dropout_in_every_call_deterministic_per_generator():
    """Eval mode changes nothing (the official encoder has no training switch); the masks come from the
    generator: same seed, same output; the next draw, another; no generator, an error."""
    torch.manual_seed(0)
    enc = nets.build_models(1, 28, SMALL)["encoder"].eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        a = enc(x, generator=g)[0]
        b = enc(x, generator=g)[0]
        c = enc(x, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, c) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="dropout in every call"):
        enc(x)
    # kept fraction ≈ 0.8 and the draws can be injected: the generator's own draws give the same output
    seen = []
    hook = enc.body[2].register_forward_hook(lambda mod, inp, out: seen.append((inp[0], out)))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = enc(x, generator=g1)[0]
    hook.remove()
    pre, post = seen[0]
    kept = float(((post != 0) | (pre == 0)).float().mean())
    assert 0.78 < kept < 0.82
    u = [torch.rand(s, generator=g2) for s in ((4, 8, 14, 14), (4, 8, 7, 7), (4, 8, 7, 7))]
    assert torch.equal(out, enc(x, dropout_u=u)[0])


def test_the_cifar_encoder_draws_nothing():
    """The cifar path consumes no random draw where the mnist encoder draws its dropout (numerics unchanged)."""
    torch.manual_seed(0)
    m = nets.build_models(1, 16, {k: v for k, v in SMALL.items() if k != "type"})
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(m["encoder"](x, generator=g)[0], m["encoder"](x)[0])
    experiments.encode_decode({**m}, x, g)
    assert torch.equal(g.get_state(), state)
    with pytest.raises(ValueError, match="no dropout"):
        m["encoder"](x, dropout_u=[x])


def test_experiments_apply_the_dropout():
    """Reconstruction's encoder call goes through the dropout: it depends on the experiment's generator."""
    torch.manual_seed(0)
    m = nets.build_models(1, 28, SMALL)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    out = [experiments.encode_decode(m, x, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    lv = {"test_steps": 2, "step_size": 0.001, "ref_sigma": 0.016, "noise": False}
    r = [experiments.reconstruct(m, x, lv, 4, torch.Generator().manual_seed(s))["vae"] for s in (0, 1)]
    assert torch.equal(r[0], out[0]) and not torch.equal(r[0], r[1])


def _cfg(seed: int) -> dict:
    return {"n_chains": 3, "batch_size": 2, "kl_weight": 3.0, "seed": seed,
            "ebm_optim": {"lr": 0.009, "beta1": 0.5}, "vae_optim": {"lr": 1e-4, "beta1": 0.5},
            "lr_decay": {"rate": 0.98, "every_epochs": 20},
            "langevin": {"step_size": 0.001, "ref_sigma": 0.016, "train_steps": 2, "test_steps": 0, "noise": False}}


def test_teaching_step_is_deterministic_per_seed():
    x = torch.rand(2, 1, 28, 28) * 2 - 1

    def step(seed: int) -> dict:
        torch.manual_seed(0)
        tr = make_trainer("coopvaebm", nets.build_models(1, 28, SMALL), _cfg(seed), torch.device("cpu"))
        return {k: float(v) for k, v in teaching_step(tr, x, _cfg(seed), SMALL["z_dim"]).items()}

    a, b, c = step(0), step(0), step(1)
    assert a == b and a["loss_vae"] != c["loss_vae"]


def test_nets_type_in_the_schema():
    params = load_params(ROOT / "params.yaml")
    p = copy.deepcopy(params)
    p["datasets"]["digits"]["nets"]["type"] = "mnist"
    validate(p)
    p["datasets"]["digits"]["nets"]["type"] = "lenet"
    with pytest.raises(ConfigError, match="lenet"):
        validate(p)


def test_reference_port_draws_the_dropout_as_ours():
    """The benchmark's straightforward port and our step compute the same function on the mnist nets: the
    dropout draws come from the same generator, in the same order (before ε)."""
    from pipeline.bench import setup
    from pipeline.reference import reference_step

    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    params["datasets"]["digits"]["prepare"]["resolution"] = 28
    params["datasets"]["digits"]["nets"] = dict(SMALL)
    s = setup(params, "digits", torch.device("cpu"), chains=6, batch=4)
    s["cfg"]["langevin"]["train_steps"] = 3
    s["trainer"].generator.manual_seed(7)
    s["ref_gen"].manual_seed(7)
    ours = teaching_step(s["trainer"], s["x"], s["cfg"], s["z_dim"])
    ref = reference_step(s["ref_models"], s["ref_optims"], s["x_ref"], s["cfg"], s["z_dim"], s["ref_gen"])
    for key in ("loss_ebm", "loss_vae", "revision_l2"):
        assert float(ours[key]) == pytest.approx(ref[key], rel=1e-5, abs=1e-6), key
    # and the comparison can fail: the same port with other dropout draws gives another VAE loss
    s["ref_gen"].manual_seed(8)
    other = reference_step(s["ref_models"], s["ref_optims"], s["x_ref"], s["cfg"], s["z_dim"], s["ref_gen"])
    assert other["loss_vae"] != pytest.approx(ref["loss_vae"], rel=1e-3)


def test_tf_layout_round_trip_mnist():
    """TF arrays → our mnist modules → TF layout gives the same arrays, for every trainable tensor."""
    torch.manual_seed(0)
    models = nets.build_models(1, 28, SMALL)
    assert tflayout.net_type_of(models) == "mnist"
    rng = np.random.RandomState(0)
    fmap = tflayout.encoder_map_shape(models)
    tf_vars = {}
    for e in tflayout.table("mnist"):
        shape = tuple(dict(models[e.module].named_parameters())[e.param].shape)
        tf_vars[e.tf + ":0"] = rng.standard_normal(tflayout.to_tf(e, np.zeros(shape), fmap).shape).astype(np.float32)
    assert tflayout.to_modules(tf_vars, models) == []
    for e in tflayout.table("mnist"):
        ours = dict(models[e.module].named_parameters())[e.param].detach().numpy()
        np.testing.assert_array_equal(tflayout.to_tf(e, ours, fmap), tf_vars[e.tf + ":0"])
    # the encoder's dense kernels: TF rows in NHWC flatten order ((h·7 + w)·C + c), ours NCHW
    e = tflayout.by_tf("mnist")["VAE_encoder/dense/kernel"]
    c, h, w = 2, 3, 4
    row = (h * 7 + w) * fmap[0] + c
    assert models["encoder"].mean.weight[1, c * 49 + h * 7 + w] == float(tf_vars[e.tf + ":0"][row, 1])
    with pytest.raises(ValueError, match="des/conv1/kernel"):
        tflayout.to_modules({"des/conv1/kernel:0": np.zeros((3, 3, 1, 8), np.float32)}, models)


# --------------------------------------------------------------------------------------------------
# Parity with the official code's mnist nets (tests/golden/mnist): the full check, ~75 s on one core.

@pytest.fixture(scope="module")
def report():
    from pipeline import parity

    return parity.run(GOLDEN)


def test_parity_with_the_official_mnist_nets(report):
    from pipeline import parity

    assert not report.failed, parity.format_report(report)
    names = {r.quantity for r in report.rows}
    for q in ("iter0/dropout1_u", "iter0/f_x_hat", "iter0/f_x_hat_sum", "iter0/des_loss", "iter0/des_loss_sum",
              "iter0/vae_loss", "iter0 weight gradients", "iter1/x_hat", "iter1 weight changes (Adam)",
              "iter1/act/enc_on_x_hat", "iter1/act/gen_from_code"):
        assert q in names
    assert sum(r.n for r in report.rows) > 1200
    assert report.config["arch"]["type"] == "mnist" and report.config["dropout"]["threshold"] == 0.20000000298023224
    assert sorted(e.split(":")[0] for e in report.excluded) == [f"VAE_generator/convt{i}/biases" for i in (1, 2, 3)]


def _vae_loss_error(monkeypatch, mutate: str) -> float:
    """|our iteration-0 VAE loss − the official one| of one float32 replay with a mutated dropout."""
    from pipeline import parity

    manifest, g = parity.load_golden(GOLDEN)
    cfg = parity.golden_config(manifest)
    cfg["iterations"] = 1
    g1 = {k: v for k, v in g.items() if not k.startswith("iter1")}
    if mutate == "rate":  # tf.nn.dropout(x, 0.8) read as TF2 does: 0.8 = the rate, keep where u >= 0.8
        monkeypatch.setattr(mnist_nets, "DROP_THRESHOLD", float(np.float32(0.8)))
        monkeypatch.setattr(mnist_nets, "DROP_SCALE", 5.0)
    elif mutate == "own draws":  # our generator's draws instead of the recorded ones
        cfg["dropout"] = None
        g1 = {k: v for k, v in g1.items() if "dropout" not in k or "/act/" in k}
    values = parity.replay(manifest, g1, cfg)[0]
    return abs(float(values["iter0/vae_loss"].ours) - float(g["iter0/vae_loss"]))


@pytest.mark.parametrize("mutate", ["rate", "own draws"])
def test_parity_sees_the_dropout(report, monkeypatch, mutate):
    """A wrong dropout (TF2's reading of the 0.8 as a rate, or masks not the recorded ones) moves the VAE
    loss far beyond K × the rounding scale the parity check measured for it."""
    from pipeline import parity

    row = next(r for r in report.rows if r.quantity == "iter0/vae_loss")
    assert row.max_abs <= parity.K * row.scale
    assert _vae_loss_error(monkeypatch, mutate) > 100 * parity.K * row.scale
