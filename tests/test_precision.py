"""params.yaml's precision sets torch's TF32 switches (pipeline/precision.py), checked on the CPU."""

from __future__ import annotations

import logging

import pytest
import torch

from pipeline.precision import PRECISIONS, apply_precision, describe


@pytest.fixture(autouse=True)
def _restore():
    """Put torch's global switches back as they were: other tests must not inherit them."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.get_float32_matmul_precision())
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fp32_and_bf16_switch_tf32_off(precision):
    # PyTorch's own default lets cuDNN convolutions run in TF32: start from TF32 fully on
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    s = apply_precision(precision)
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    assert s == {"precision": precision, "autocast": "bf16" if precision == "bf16" else "off",
                 "cudnn.allow_tf32": False, "cuda.matmul.allow_tf32": False, "float32_matmul_precision": "highest"}


def test_tf32_is_an_explicit_switch():
    apply_precision("fp32")
    s = apply_precision("tf32")
    assert torch.backends.cudnn.allow_tf32 is True and torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.get_float32_matmul_precision() == "high" and s["autocast"] == "off"
    assert "cudnn.allow_tf32 True" in describe(s)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp16"):
        apply_precision("fp16")


def test_schema_allows_exactly_these(in_repo):
    text = (in_repo / "pipeline/schema.yaml").read_text()
    assert text.count("enum: [fp32, tf32, bf16]") >= 4 and "enum: [fp32, bf16]" not in text
    assert set(PRECISIONS) == {"fp32", "tf32", "bf16"}


def test_train_stage_applies_and_logs_the_precision(tmp_path, monkeypatch, caplog):
    """The train stage sets the switches from its method's params before building nets, and logs them."""
    from pipeline.stages import train as train_stage

    seen = {}

    class Stop(Exception):
        pass

    def stop(*a, **k):  # stop right after the switches are set and logged (no data needed beyond this)
        seen["cudnn"] = torch.backends.cudnn.allow_tf32
        raise Stop

    monkeypatch.setattr(train_stage, "load_prepared", stop)
    torch.backends.cudnn.allow_tf32 = True
    params = {"datasets": {"d": {"nets": {}, "methods": {"coopvaebm": {"seeds": [0], "precision": "fp32"}}}}}
    with caplog.at_level(logging.INFO, logger="pipeline"), pytest.raises(Stop):
        train_stage.train(params, "d", "coopvaebm", 0, "cpu", progress=False)
    assert seen["cudnn"] is False
    assert "precision fp32: autocast off, cudnn.allow_tf32 False, cuda.matmul.allow_tf32 False, " \
           "float32_matmul_precision highest" in caplog.text


def test_config_accepts_tf32_and_refuses_others(in_repo):
    import copy

    import yaml

    from pipeline.config import ConfigError, validate

    params = yaml.safe_load((in_repo / "params.yaml").read_text())
    ok = copy.deepcopy(params)
    ok["datasets"]["cifar10"]["methods"]["coopvaebm"]["precision"] = "tf32"
    validate(ok)
    bad = copy.deepcopy(params)
    bad["datasets"]["cifar10"]["methods"]["coopvaebm"]["precision"] = "fp16"
    with pytest.raises(ConfigError, match="precision"):
        validate(bad)
