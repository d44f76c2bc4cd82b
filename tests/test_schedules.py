"""SVHN and CelebA: the official per-epoch decay (the default) against the decay scaled to CIFAR-10's fraction."""

from __future__ import annotations

import copy
import re

import pytest

from pipeline.config import load_params, validate
from pipeline.teaching import lr_factor

PAPER = ("cifar10", "svhn", "celeba")


def _final(cfg: dict) -> float:
    """The learning-rate factor of the last epoch (epochs are 0-based)."""
    return lr_factor(cfg["epochs"] - 1, cfg["lr_decay"])


@pytest.fixture(scope="module")
def params(request):
    return load_params(request.config.rootpath / "params.yaml")


def test_the_default_is_the_official_schedule_and_its_final_factors_are_as_documented(params):
    finals = {}
    for d in PAPER:
        for m, cfg in params["datasets"][d]["methods"].items():
            if "lr_decay" in cfg:
                assert cfg["lr_decay"] == {"rate": 0.98, "every_epochs": 20}, (d, m)  # official, every method
                finals[d] = _final(cfg)
    assert finals["cifar10"] == pytest.approx(0.0064, abs=5e-5)
    assert finals["svhn"] == pytest.approx(0.032, abs=5e-4)
    assert finals["celeba"] == pytest.approx(0.212, abs=5e-4)


def test_the_documented_switch_decays_over_cifar10s_fraction(params, request):
    """The every_epochs values params.yaml's comments give, applied, end where CIFAR-10 does."""
    text = (request.config.rootpath / "params.yaml").read_text()
    values = {int(m.group(2)): float(m.group(1)) for m in
              re.finditer(r"every_epochs: ([\d.]+)\}\s+# 20 x (\d+) / 5000", text)}
    assert set(values) == {3413, 1536}
    cifar = _final(params["datasets"]["cifar10"]["methods"]["coopvaebm"])
    for d in ("svhn", "celeba"):
        p = copy.deepcopy(params)
        for cfg in p["datasets"][d]["methods"].values():
            if "lr_decay" in cfg:
                cfg["lr_decay"] = {"rate": 0.98, "every_epochs": values[cfg["epochs"]]}
        validate(p)  # a fractional every_epochs is a valid value
        cfg = p["datasets"][d]["methods"]["coopvaebm"]
        assert values[cfg["epochs"]] == pytest.approx(20 * cfg["epochs"] / 5000)
        assert _final(cfg) == pytest.approx(cifar, rel=5e-3)  # equal up to one epoch's share of a period
