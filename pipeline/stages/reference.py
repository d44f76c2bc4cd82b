"""Stage reference: Inception features of the real reference images (paper datasets), computed once."""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.stages.common import EMBEDDED, log, pick_device
from pipeline.stages.weights import inception_precision, inception_weights


def reference_images(data, which: str, n: int, dataset: str) -> np.ndarray:
    """The first ``n`` images of the reference set (official protocol: the first N training images)."""
    pool = {"train": lambda: data.x_train, "test": lambda: data.x_test,
            "train+test": lambda: np.concatenate([data.x_train, data.x_test])}[which]()
    if n > len(pool):
        raise ValueError(f"datasets.{dataset}.score.n_reference = {n}, but the '{which}' set of {dataset} has only "
                         f"{len(pool)} images: lower n_reference or choose a larger reference set")
    return pool[:n]


def reference(params: dict, dataset: str, progress: bool = True) -> None:
    """Inception features of the real reference images, computed once for every score stage.

    Runs before any training in the workflows, so a missing weight file stops the run early.
    """
    from pipeline.inception import extract, save_features

    if dataset in EMBEDDED:
        raise ValueError(f"{dataset} is scored on its classifier's features; the reference stage is for "
                         "the paper's datasets")
    scfg = dataset_cfg(params, dataset)["score"]
    weights = inception_weights(scfg)
    inception_precision()
    data = load_prepared(paths.prepared(dataset))
    ref = reference_images(data, scfg["reference"], scfg["n_reference"], dataset)
    log.info("Inception features of %d %s images of %s", len(ref), scfg["reference"], dataset)
    feats = extract(ref, weights, batch_size=scfg["batch_size"], device=pick_device(None), progress=progress)
    save_features(paths.reference_features(dataset), feats)
