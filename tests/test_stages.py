"""Units of the stages: atomic writes, the sampler's uint8 mapping, checkpoints, check and tables."""

import copy
import json

import numpy as np
import pytest
import torch

from pipeline import paths
from pipeline.atomic import write_npz, write_text
from pipeline.check import ThresholdError, check
from pipeline.nets import build_models
from pipeline.pixels import to_float, to_uint8
from pipeline.tables import tables


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(ValueError):
        write_npz(target, a=np.array([object()], dtype=object))  # cannot be saved without pickle
    assert list(tmp_path.iterdir()) == []


def test_npz_is_byte_identical_across_writes(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    write_npz(a, x=np.arange(10, dtype=np.uint8))
    write_npz(b, x=np.arange(10, dtype=np.uint8))
    assert a.read_bytes() == b.read_bytes()
    assert np.array_equal(np.load(a)["x"], np.arange(10))


def test_uint8_mapping_follows_official_code():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert to_uint8(x).ravel().tolist() == [0, 0, 127, 254, 255, 255]
    img = np.array([0, 127, 255], dtype=np.uint8).reshape(1, 1, 3, 1)
    assert to_float(img).ravel().tolist() == pytest.approx([-1.0, 127 / 127.5 - 1, 1.0])


@pytest.mark.parametrize("size", [16, 32])
def test_nets_shapes(size):
    nets = {"ebm_width": 8, "enc_width": 8, "gen_width": 8, "z_dim": 5, "init_std": 0.005}
    m = build_models(3, size, nets)
    x = m["decoder"](torch.randn(4, 5))
    assert x.shape == (4, 3, size, size) and x.abs().max() <= 1
    assert m["ebm"](x).shape == (4,)
    mean, logstd = m["encoder"](x)
    assert mean.shape == logstd.shape == (4, 5)


def _metrics(tmp_path, coop=(5.0, 9.0), vae=7.0, seed=0):
    for method, fd, fd_vae in (("coopvaebm", *coop), ("vae", vae, vae), ("real", 0.3, 0.3)):
        write_text(tmp_path / paths.metrics("digits", method, None if method == "real" else seed), json.dumps(
            {"fd_digits": fd, "fd_digits_vae": fd_vae, "kid_digits": 0.01, "kid_digits_std": 0.001,
             "n_samples": 540, "n_reference": 1257, "reference": "train"}))


PARAMS = {"datasets": {"digits": {"methods": {"coopvaebm": {"seeds": [0, 1]}, "vae": {"seeds": [0, 1]}}}},
          "ci": {"digits": {"methods": ["coopvaebm", "vae"], "seeds": [0]}}}


RULES = [{"metric": "coopvaebm.n_samples", "min": 500},
         {"metric": "coopvaebm.fd_digits", "below": "vae.fd_digits"},
         {"metric": "coopvaebm.fd_digits", "max": 6.0}]


def test_check_passes_and_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _metrics(tmp_path)
    results = check({**PARAMS, "check": {"digits": RULES}}, "digits")
    assert all(r["ok"] for r in results)
    assert json.loads((tmp_path / paths.check_report("digits")).read_text())["checks"][1]["bound"] == 7.0


def test_check_fails_naming_the_metric_and_writes_no_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _metrics(tmp_path, coop=(8.0, 9.0))
    with pytest.raises(ThresholdError, match=r"coopvaebm.fd_digits = 8 < vae.fd_digits = 7[\s\S]*fd_digits = 8 <= 6"):
        check({**PARAMS, "check": {"digits": RULES}}, "digits")
    assert not (tmp_path / paths.check_report("digits")).exists()


def test_an_order_with_a_margin_needs_the_gap(tmp_path, monkeypatch):
    """coopvaebm 5.0 against vae 7.0: below by 2.0, so a margin of 1.5 holds and one of 2.5 does not."""
    monkeypatch.chdir(tmp_path)
    _metrics(tmp_path)
    rule = {"metric": "coopvaebm.fd_digits", "below": "vae.fd_digits", "margin": 1.5}
    results = check({**PARAMS, "check": {"digits": [rule]}}, "digits")
    assert results[0]["ok"] and results[0]["bound"] == 5.5
    with pytest.raises(ThresholdError, match=r"coopvaebm.fd_digits = 5 <= vae.fd_digits - 2.5 = 7 - 2.5"):
        check({**PARAMS, "check": {"digits": [{**rule, "margin": 2.5}]}}, "digits")


def test_check_applies_thresholds_to_the_mean_over_seeds(tmp_path, monkeypatch):
    """Seed 0 alone crosses fd <= 6 (8.0); with seed 1 (3.0) the mean 5.5 passes; the ci scope sees seed 0 only."""
    monkeypatch.chdir(tmp_path)
    _metrics(tmp_path, coop=(8.0, 9.0), vae=9.0, seed=0)
    _metrics(tmp_path, coop=(3.0, 9.0), vae=9.0, seed=1)
    rules = [{"metric": "coopvaebm.fd_digits", "max": 6.0}, {"metric": "ebm.fd_digits", "max": 1.0}]
    params = {**copy.deepcopy(PARAMS), "check": {"digits": rules}}
    params["datasets"]["digits"]["methods"]["ebm"] = {"seeds": [0]}
    with pytest.raises(FileNotFoundError, match="ebm"):  # a method of the scope without results
        check(params, "digits")
    results = check({**PARAMS, "check": {"digits": rules[:1]}}, "digits")
    assert results[0]["value"] == 5.5 and results[0]["seeds"] == {"0": 8.0, "1": 3.0}
    with pytest.raises(ThresholdError, match="ci runs"):
        check({**PARAMS, "check": {"digits": rules}}, "digits", "ci")  # the ebm rule: not in the ci scope
    report = json.loads((tmp_path / paths.check_report("digits")).read_text())
    assert report["scope"] == "all" and not (tmp_path / paths.check_report("digits", "ci")).exists()


def _experiments(tmp_path, seed, mse):
    for name, values in (("completion", {"mse_hidden_masked": 0.5, "mse_hidden_vae": mse + 0.1,
                                         "mse_hidden_completed": mse, "accuracy_masked": 0.4, "accuracy_vae": 0.7,
                                         "accuracy_completed": 0.8, "accuracy_truth": 1.0}),
                         ("reconstruction", {"mse_vae": mse + 0.2, "mse_refined": mse + 0.1})):
        write_text(tmp_path / paths.experiment("digits", "coopvaebm", seed, name, "json"),
                   json.dumps({"n_images": 540, "langevin_steps": 15, "fill": 0.0, **values}))


def test_tables_markdown_and_latex(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _metrics(tmp_path, seed=0)
    _metrics(tmp_path, coop=(3.0, 8.0), vae=6.0, seed=1)
    _experiments(tmp_path, 0, 0.2)
    _experiments(tmp_path, 1, 0.3)
    tables(PARAMS, "digits")
    md = (tmp_path / paths.table("digits", "md")).read_text()
    # mean ± sample std over seeds 0 and 1, and each seed's value
    # PARAMS sets no epochs: the epochs column says so ("—") rather than guessing
    assert "| coopvaebm | 2 | — | 4.00 ± 1.41 | 8.50 ± 0.71 | 10.00 ± 0.00 | s0 5.00, s1 3.00 |" in md
    assert "| vae | 2 | — | — | 6.50 ± 0.71 |" in md and "floor" in md
    assert "| VAE + Langevin (15 steps) | 0.2500 ± 0.0707 | 0.800 ± 0.000 | 0.3500 ± 0.0707 |" in md
    assert "| masked input (hidden half = 0) | 0.5000 ± 0.0000 | 0.400 ± 0.000 | — |" in md
    tex = (tmp_path / paths.table("digits", "tex")).read_text()
    assert r"\begin{tabular}" in tex and r"coopvaebm & 2 & -- & 4.00 $\pm$ 1.41" in tex
    tables(PARAMS, "digits", "ci")  # seed 0 only: one value, no ±
    ci = (tmp_path / paths.table("digits", "md", "ci")).read_text()
    assert "| coopvaebm | 1 | — | 5.00 | 9.00 |" in ci and "| VAE + Langevin (15 steps) | 0.2000 |" in ci


def test_torch_checkpoint_is_byte_identical_across_writes(tmp_path):
    from pipeline.atomic import write_torch

    state = {"w": torch.arange(6.0).view(2, 3), "step": 3}
    write_torch(tmp_path / "a.pt", state)
    write_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], state["w"])


def _tiny_checkpoint(tmp_path, nets):
    from pipeline.stages.checkpoints import save_checkpoint

    arch = {"channels": 1, "size": 16, **nets}
    path = tmp_path / "seed0.pt"
    save_checkpoint(path, "digits", "coopvaebm", arch, build_models(1, 16, nets), iterations=1)
    return path, arch


NETS = {"ebm_width": 8, "enc_width": 8, "gen_width": 8, "z_dim": 5, "init_std": 0.005}


def test_checkpoint_roundtrip_and_architecture_mismatch_is_named(tmp_path):
    from pipeline.stages.checkpoints import load_checkpoint

    path, arch = _tiny_checkpoint(tmp_path, NETS)
    models = load_checkpoint(path, "digits", "coopvaebm", arch, torch.device("cpu"))
    assert set(models) == {"ebm", "encoder", "decoder"}
    with pytest.raises(RuntimeError, match=r"another architecture.*'ebm_width': \(8, 16\)"):
        load_checkpoint(path, "digits", "coopvaebm", {**arch, "ebm_width": 16}, torch.device("cpu"))


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path):
    import argparse

    from pipeline.stages.checkpoints import load_checkpoint

    bad = tmp_path / "bad.pt"
    torch.save({"format": 1, "payload": argparse.Namespace(x=1)}, bad)
    with pytest.raises(RuntimeError, match="weights_only=True"):
        load_checkpoint(bad, "digits", "coopvaebm", {}, torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        load_checkpoint(tmp_path / "missing.pt", "digits", "coopvaebm", {}, torch.device("cpu"))


def test_official_roundtrip_is_the_samples_conversion_applied_to_real_images():
    """Real uint8 images through x/127.5 − 1 (float32) and back: 63 grey levels come back one lower."""
    from pipeline.pixels import official_roundtrip

    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    back = official_roundtrip(levels)
    np.testing.assert_array_equal(back, to_uint8(to_float(levels)))
    diff = levels.astype(int) - back.astype(int)
    assert set(np.unique(diff)) == {0, 1} and int(diff.sum()) == 63
    assert back[0, 0, 0, 0] == 0 and back[0, -1, -1, 0] == 255  # the ends survive
    chunked = official_roundtrip(np.repeat(levels, 5, axis=0), chunk=2)  # chunking changes nothing
    assert all(np.array_equal(c, back[0]) for c in chunked)
    with pytest.raises(ValueError, match="uint8"):
        official_roundtrip(levels.astype(np.float32))


def test_reference_features_are_shared_by_protocols_with_one_reference_set(tmp_path, monkeypatch):
    """Protocols on the same set and conversion read one feature pass, each its first n_reference rows."""
    from pipeline.atomic import write_npz
    from pipeline.inception import FEATURE_KEYS
    from pipeline.stages.reference import load_references, reference_groups

    protos = {"official": {"n_samples": 1, "reference": "train", "n_reference": 3, "conversion": "official"},
              "big": {"n_samples": 1, "reference": "train", "n_reference": 5, "conversion": "official"},
              "raw": {"n_samples": 1, "reference": "train", "n_reference": 4, "conversion": "none"}}
    assert reference_groups(protos) == {"train.official": ("train", "official", 5), "train.none": ("train", "none", 4)}
    monkeypatch.chdir(tmp_path)
    feats = {f"train.official/{k}": np.arange(10, dtype=np.float32).reshape(5, 2) for k in FEATURE_KEYS}
    write_npz("data/reference/cifar10.npz", **feats)
    both = load_references("cifar10", {k: protos[k] for k in ("official", "big")})
    got = both["official"]
    assert all(v.shape == (5, 2) for v in both["big"].values())
    assert set(got) == set(FEATURE_KEYS) and all(v.shape == (3, 2) for v in got.values())
    with pytest.raises(RuntimeError, match="rerun the reference stage"):
        load_references("cifar10", protos)  # no pass of the unconverted set
    with pytest.raises(RuntimeError, match="asks for 6"):
        load_references("cifar10", {"big": {**protos["big"], "n_reference": 6}})
