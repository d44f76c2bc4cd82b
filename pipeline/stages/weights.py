"""The Inception weight files every Inception stage (reference, score, score-real) loads."""

from __future__ import annotations

from pipeline.inception import find_weights
from pipeline.precision import apply_precision, describe
from pipeline.stages.common import log


def inception_weights(scfg: dict):
    """The weight files of torch-fidelity and clean-fid, found (or downloaded) as the score section says."""
    return find_weights(scfg["inception_weights_dir"], download=scfg["download_weights"])


def inception_precision() -> None:
    """Inception features in full fp32 (TF32 off): the paper-era TF numbers, whatever the GPU's default."""
    log.info("Inception features: %s", describe(apply_precision("fp32")))
