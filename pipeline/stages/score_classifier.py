"""Stages score and score-real on the datasets with their own classifier (digits, fashion-mnist): fd_/kid_<name>
on its features (<name>: ``pipeline.config.score_name``, fashion-mnist -> fashion).

Both stages run the same scorer, on a run's samples or on real images the reference does not hold, hence one module.
"""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import dataset_cfg, score_name
from pipeline.data import load_prepared
from pipeline.precision import apply_precision
from pipeline.stages.common import log


def _reference(data, which: str) -> np.ndarray:
    return data.x_train if which == "train" else data.x_test


def score(params: dict, dataset: str, method: str, seed: int = 0, progress: bool = True) -> None:
    """Score run (method, seed)'s samples (revised and proposal-only, where each exists) on the classifier's features."""
    out, _, _ = run_scores(params, dataset, method, seed, progress)
    write_json(paths.metrics(dataset, method, seed), out)


def score_real(params: dict, dataset: str, progress: bool = True) -> None:
    """The floor: real images outside the reference, scored exactly like samples.

    Reference ``train`` (digits): the held-out test split against the training split. Reference ``test``
    (fashion-mnist): the first len(test) training images, in the stored (shuffled) order, against the test split.
    """
    out, _, _ = real_scores(params, dataset, progress)
    write_json(paths.metrics(dataset, "real"), out)


def run_scores(params: dict, dataset: str, method: str, seed: int,
               progress: bool) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """fd_/kid_<dataset> of run (method, seed) on the dataset classifier's features: (metrics, the sample sets by
    name, the reference images), so that a caller can score the same images otherwise before writing once."""
    from pipeline.metrics import cleanfid_fd, fidelity_scores

    apply_precision("fp32")  # the classifier's features in full fp32 on a GPU too (TF32 off)

    scfg = dataset_cfg(params, dataset)["score"]
    data = load_prepared(paths.prepared(dataset))
    ref = _reference(data, scfg["reference"])
    clf = str(paths.classifier(dataset))
    name = score_name(dataset)
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
        out[f"fd_{name}{suffix}"] = scores[key]["fd"]
        out[f"kid_{name}{suffix}"] = scores[key]["kid"]
        out[f"kid_{name}{suffix}_std"] = scores[key]["kid_std"]
    out[f"fd_{name}_cleanfid"] = cleanfid_fd(sets[final], ref, clf, batch_size=scfg["batch_size"])
    log.info("%s seed %d on %s: %s", method, seed, dataset, {k: v for k, v in out.items() if k.startswith(("fd_", "kid_"))})
    return out, sets, ref


def real_scores(params: dict, dataset: str, progress: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    """The floor's fd_/kid_<dataset>: (metrics, the real images scored, the reference images)."""
    from pipeline.metrics import cleanfid_fd, fidelity_scores

    apply_precision("fp32")

    scfg = dataset_cfg(params, dataset)["score"]
    data = load_prepared(paths.prepared(dataset))
    clf = str(paths.classifier(dataset))
    name = score_name(dataset)
    if scfg["reference"] == "train":
        real, ref, extra = data.x_test, data.x_train, {}
    else:  # the test split is the reference: as many training images as it holds stand in for the samples
        real, ref = data.x_train[:len(data.x_test)], data.x_test
        extra = {"samples": f"the first {len(real)} training images (stored order)"}
    s = fidelity_scores(real, ref, clf, kid_subsets=scfg["kid_subsets"],
                        kid_subset_size=scfg["kid_subset_size"], batch_size=scfg["batch_size"], verbose=progress)
    out = {"reference": scfg["reference"], "n_reference": int(len(ref)), "n_samples": int(len(real)), **extra,
           f"fd_{name}": s["fd"], f"kid_{name}": s["kid"], f"kid_{name}_std": s["kid_std"],
           f"fd_{name}_cleanfid": cleanfid_fd(real, ref, clf, batch_size=scfg["batch_size"])}
    log.info("real test split on %s: %s", dataset, out)
    return out, real, ref
