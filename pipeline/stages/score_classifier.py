"""Stages score and score-real on the embedded dataset (digits): fd_/kid_<dataset> on its classifier's features.

Both stages run the same scorer, on a run's samples or on the held-out real images, hence one module.
"""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.precision import apply_precision
from pipeline.stages.common import check_floor_reference, log


def _reference(data, which: str) -> np.ndarray:
    return data.x_train if which == "train" else data.x_test


def score(params: dict, dataset: str, method: str, seed: int = 0, progress: bool = True) -> None:
    """Score run (method, seed)'s samples (revised and proposal-only, where each exists) on the classifier's features."""
    _score_embedded(params, dataset, method, seed, progress)


def score_real(params: dict, dataset: str, progress: bool = True) -> None:
    """The floor: the held-out real test images scored exactly like samples."""
    check_floor_reference(dataset_cfg(params, dataset)["score"], dataset)
    _score_real_embedded(params, dataset, progress)


def _score_embedded(params: dict, dataset: str, method: str, seed: int, progress: bool) -> None:
    """fd_/kid_<dataset> on the dataset classifier's features."""
    from pipeline.metrics import cleanfid_fd, fidelity_scores

    apply_precision("fp32")  # the classifier's features in full fp32 on a GPU too (TF32 off)

    scfg = dataset_cfg(params, dataset)["score"]
    data = load_prepared(paths.prepared(dataset))
    ref = _reference(data, scfg["reference"])
    clf = str(paths.classifier(dataset))
    with np.load(paths.samples(dataset, method, seed), allow_pickle=False) as z:
        sets = {k: z[k] for k in z.files}
    final = "revised" if "revised" in sets else "vae"
    # the proposal's own scores (``_vae``) where there is a proposal (not for the short-run EBM)
    pairs = [(final, "")] + ([("vae", "_vae")] if "vae" in sets else [])
    kw = dict(kid_subsets=scfg["kid_subsets"], kid_subset_size=scfg["kid_subset_size"],
              batch_size=scfg["batch_size"], verbose=progress)
    out: dict = {"reference": scfg["reference"], "n_reference": int(len(ref)), "n_samples": int(len(sets[final])),
                 "feature_extractor": f"{dataset} classifier ({clf})"}
    scores = {key: fidelity_scores(imgs, ref, clf, **kw) for key, imgs in sets.items()}
    for key, suffix in pairs:
        out[f"fd_{dataset}{suffix}"] = scores[key]["fd"]
        out[f"kid_{dataset}{suffix}"] = scores[key]["kid"]
        out[f"kid_{dataset}{suffix}_std"] = scores[key]["kid_std"]
    out[f"fd_{dataset}_cleanfid"] = cleanfid_fd(sets[final], ref, clf, batch_size=scfg["batch_size"])
    write_json(paths.metrics(dataset, method, seed), out)
    log.info("%s seed %d on %s: %s", method, seed, dataset, {k: v for k, v in out.items() if k.startswith(("fd_", "kid_"))})


def _score_real_embedded(params: dict, dataset: str, progress: bool) -> None:
    from pipeline.metrics import cleanfid_fd, fidelity_scores

    apply_precision("fp32")

    scfg = dataset_cfg(params, dataset)["score"]
    data = load_prepared(paths.prepared(dataset))
    clf = str(paths.classifier(dataset))
    s = fidelity_scores(data.x_test, data.x_train, clf, kid_subsets=scfg["kid_subsets"],
                        kid_subset_size=scfg["kid_subset_size"], batch_size=scfg["batch_size"], verbose=progress)
    out = {"reference": "train", "n_reference": int(len(data.x_train)), "n_samples": int(len(data.x_test)),
           f"fd_{dataset}": s["fd"], f"kid_{dataset}": s["kid"], f"kid_{dataset}_std": s["kid_std"],
           f"fd_{dataset}_cleanfid": cleanfid_fd(data.x_test, data.x_train, clf, batch_size=scfg["batch_size"])}
    write_json(paths.metrics(dataset, "real"), out)
    log.info("real test split on %s: %s", dataset, out)
