"""The Inception weight files every Inception stage (reference, score, score-real) loads, and stage weights:
the check that they are there, which every training run of a paper dataset waits for."""

from __future__ import annotations

import os

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import dataset_cfg
from pipeline.inception import ENV_VAR, find_weights
from pipeline.precision import apply_precision, describe
from pipeline.stages.common import EMBEDDED, log


def inception_weights(scfg: dict):
    """The weight files of torch-fidelity and clean-fid, found (or downloaded) as the score section says."""
    return find_weights(scfg["inception_weights_dir"], download=scfg["download_weights"])


def weights(params: dict, dataset: str, progress: bool = True) -> None:
    """Find (or, with ``download_weights``, fetch) both weight files before any training starts.

    Writes ``data/reference/<dataset>-weights.json`` naming the files found, not where: the marker is
    the same on every node and for every directory, so moving the weights reruns nothing.
    """
    if dataset in EMBEDDED:
        raise ValueError(f"{dataset} is scored on its classifier's features and needs no Inception weights")
    scfg = dataset_cfg(params, dataset)["score"]
    found = inception_weights(scfg)
    log.info("Inception weights for %s: %s, %s (score.inception_weights_dir %s, $%s %s)", dataset,
             found.fidelity_pth, found.cleanfid_pt, scfg["inception_weights_dir"], ENV_VAR,
             os.environ.get(ENV_VAR) or "unset")
    write_json(paths.weights_check(dataset), {"torch-fidelity": found.fidelity_pth.name,
                                              "clean-fid": found.cleanfid_pt.name})


def inception_precision() -> None:
    """Inception features in full fp32 (TF32 off): the paper-era TF numbers, whatever the GPU's default."""
    log.info("Inception features: %s", describe(apply_precision("fp32")))
