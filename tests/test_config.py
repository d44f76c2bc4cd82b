import copy

import pytest
import yaml

from pipeline.config import ConfigError, load_params, validate


@pytest.fixture
def params(in_repo):
    return load_params(in_repo / "params.yaml")


def _raises(params, *needles):
    with pytest.raises(ConfigError) as err:
        validate(params)
    for needle in needles:
        assert needle in str(err.value), str(err.value)
    return str(err.value)


def test_repo_params_are_valid(params):
    assert "digits" in params["datasets"]


def test_wrong_type_names_the_key(params):
    bad = copy.deepcopy(params)
    bad["datasets"]["digits"]["methods"]["coopvaebm"]["epochs"] = "ten"
    _raises(bad, "datasets.digits.methods.coopvaebm.epochs", "not of type 'integer'")


def test_unknown_key_names_the_key(params):
    bad = copy.deepcopy(params)
    bad["datasets"]["digits"]["methods"]["coopvaebm"]["langevin"]["n_steps"] = 10
    _raises(bad, "unknown key datasets.digits.methods.coopvaebm.langevin.n_steps", "train_steps")


def test_negative_step_size_is_out_of_range(params):
    bad = copy.deepcopy(params)
    bad["datasets"]["digits"]["methods"]["coopvaebm"]["langevin"]["step_size"] = -0.002
    _raises(bad, "datasets.digits.methods.coopvaebm.langevin.step_size")


def test_unknown_dataset_and_method(params):
    bad = copy.deepcopy(params)
    bad["datasets"]["mnist"] = bad["datasets"]["digits"]
    bad["datasets"]["digits"]["methods"]["gan"] = {}
    _raises(bad, "unknown key datasets.mnist", "unknown key datasets.digits.methods.gan")


def test_unparsable_and_missing_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("datasets: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(p)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_cli_exits_nonzero_with_message(tmp_path, in_repo, capsys):
    from pipeline.__main__ import main

    bad = yaml.safe_load((in_repo / "params.yaml").read_text())
    bad["datasets"]["digits"]["prepare"]["resolution"] = 15
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(bad))
    assert main(["prepare", "--dataset", "digits", "--params", str(p)]) == 1
    assert "datasets.digits.prepare.resolution" in capsys.readouterr().err


def test_speed_switches_are_validated(params):
    ok = copy.deepcopy(params)
    ok["datasets"]["cifar10"]["methods"]["coopvaebm"]["precision"] = "bf16"
    ok["datasets"]["cifar10"]["methods"]["vae"]["compile"] = True
    validate(ok)
    bad = copy.deepcopy(params)
    bad["datasets"]["digits"]["methods"]["coopvaebm"]["precision"] = "fp16"
    bad["datasets"]["digits"]["methods"]["vae"]["compile"] = "yes"
    _raises(bad, "datasets.digits.methods.coopvaebm.precision", "datasets.digits.methods.vae.compile")


def test_a_margin_needs_an_order_to_apply_to(params):
    ok = copy.deepcopy(params)
    ok["check"]["digits"].append({"metric": "coopvaebm.fd_digits", "below": "vae.fd_digits", "margin": 0.5})
    validate(ok)
    bad = copy.deepcopy(params)
    bad["check"]["digits"].append({"metric": "coopvaebm.fd_digits", "max": 9.0, "margin": 0.5})
    _raises(bad, "check.digits", "below")
    bad["check"]["digits"][-1] = {"metric": "coopvaebm.fd_digits", "below": "vae.fd_digits", "margin": -1}
    _raises(bad, "check.digits")


def test_fid_protocols_are_named_and_bounded_by_the_samples(params):
    """The paper datasets score each named protocol; one cannot take more samples than the sample stage makes."""
    protos = params["datasets"]["cifar10"]["score"]["protocols"]
    assert protos["official"] == {"n_samples": 10000, "reference": "train", "n_reference": 10000,
                                  "conversion": "official"}
    assert (protos["50k-train"]["n_samples"], protos["50k-train"]["n_reference"]) == (50000, 50000)
    bad = copy.deepcopy(params)
    bad["datasets"]["cifar10"]["score"]["protocols"]["official"]["n_samples"] = 60000
    _raises(bad, "datasets.cifar10.score.protocols.official.n_samples = 60000", "sample.n_samples makes only 50000")
    bad = copy.deepcopy(params)
    bad["datasets"]["cifar10"]["score"]["protocols"]["official"]["conversion"] = "rounded"
    _raises(bad, "datasets.cifar10.score.protocols.official.conversion")


def test_check_rules_reach_into_a_protocol(params, tmp_path, monkeypatch):
    """`<method>.<protocol>.<key>` reads that protocol's block; a missing one is named."""
    import json

    from pipeline.check import lookup

    m = {"protocols": ["official"], "official": {"fid": 40.0}}
    assert lookup(m, "official.fid", "m.json") == 40.0
    with pytest.raises(KeyError, match="'50k-train.fid'.*official"):
        lookup(m, "50k-train.fid", "m.json")
    assert json.dumps(m)  # the shape the score stage writes is plain JSON
