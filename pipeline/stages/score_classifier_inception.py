"""Stages score and score-real on Fashion-MNIST: its classifier's fd_/kid_fashion, and, whenever the Inception
weights are present (a GPU user's machine; nothing is downloaded), Inception's FID / IS / KID and clean-FID of the
same images, through the scorer the paper datasets use.

The grey images go to Inception as three equal channels (torch-fidelity and clean-fid resize them to 299×299).
metrics.json gains an ``inception`` block only when the weights were found; without them the stage writes what
``score_classifier`` writes and says in its log where it looked.
"""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import dataset_cfg
from pipeline.inception import WeightsError, find_weights
from pipeline.stages import score_classifier
from pipeline.stages.common import log
from pipeline.stages.score_inception import inception_features, inception_scores, scorer_settings
from pipeline.stages.weights import inception_precision


def score(params: dict, dataset: str, method: str, seed: int = 0, progress: bool = True) -> None:
    """Score run (method, seed)'s samples on the classifier's features, and on Inception's when its weights are here."""
    out, sets, ref = score_classifier.run_scores(params, dataset, method, seed, progress)
    final = "revised" if "revised" in sets else "vae"
    images = {"": sets[final], **({"_vae": sets["vae"]} if final != "vae" else {})}
    block = _inception_block(dataset_cfg(params, dataset)["score"], images, ref, progress)
    if block is not None:
        out["inception"] = block
        log.info("%s seed %d on %s, Inception: FID %.2f (proposal only %s), IS %.2f", method, seed, dataset,
                 block["fid"], block.get("fid_vae"), block["inception_score"])
    write_json(paths.metrics(dataset, method, seed), out)


def score_real(params: dict, dataset: str, progress: bool = True) -> None:
    """The floor, on the classifier's features and on Inception's when its weights are here."""
    out, real, ref = score_classifier.real_scores(params, dataset, progress)
    block = _inception_block(dataset_cfg(params, dataset)["score"], {"": real}, ref, progress)
    if block is not None:
        out["inception"] = block
        log.info("real images on %s, Inception: FID %.2f, IS %.2f", dataset, block["fid"], block["inception_score"])
    write_json(paths.metrics(dataset, "real"), out)


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


def _inception_block(scfg: dict, images: dict[str, np.ndarray], ref: np.ndarray, progress: bool) -> dict | None:
    """Inception's scores of each image set (key: the metric names' suffix) against ``ref``, or None without weights."""
    icfg = scfg.get("inception")
    if not icfg:
        return None
    try:
        weights = find_weights(icfg["weights_dir"], download=False)
    except WeightsError as e:
        log.info("no Inception scores (the weights are not here; score.inception in params.yaml):\n%s", e)
        return None
    inception_precision()
    kw = {"batch_size": icfg["batch_size"], "kid_subsets": scfg["kid_subsets"],
          "kid_subset_size": scfg["kid_subset_size"], "isc_splits": icfg["isc_splits"]}
    # One pass for the reference and every set: the networks load once (a pass costs seconds before its first image)
    parts = [ref, *images.values()]
    feats = inception_features(_rgb(np.concatenate(parts)), kw, weights, progress)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    sliced = [{k: v[a:b] for k, v in feats.items()} for a, b in zip(bounds[:-1], bounds[1:])]
    block: dict = {**scorer_settings(kw), "n_reference": int(len(ref)),
                   "n_samples": int(len(next(iter(images.values())))), "channels": "grey repeated to RGB"}
    for suffix, set_feats in zip(images, sliced[1:]):
        res = inception_scores(set_feats, sliced[0], kw)
        block.update({f"{k}{suffix}": v for k, v in res.items()})
    return block
