"""The Inception weight files every Inception stage (reference, score, score-real) loads."""

from __future__ import annotations

from pipeline.inception import find_weights


def inception_weights(scfg: dict):
    """The weight files of torch-fidelity and clean-fid, found (or downloaded) as the score section says."""
    return find_weights(scfg["inception_weights_dir"], download=scfg["download_weights"])
