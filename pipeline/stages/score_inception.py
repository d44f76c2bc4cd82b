"""Stages score and score-real on the paper datasets: FID, IS, KID (torch-fidelity) and clean-FID.

Both stages run the same scorer, on a run's samples or on the held-out real images, hence one module.
"""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.stages.common import check_floor_reference, log, pick_device
from pipeline.stages.weights import inception_precision, inception_weights


def score(params: dict, dataset: str, method: str, seed: int = 0, progress: bool = True) -> None:
    """Score run (method, seed)'s samples (revised and proposal-only, where each exists) against the reference."""
    _score_inception(params, dataset, method, seed, progress)


def score_real(params: dict, dataset: str, progress: bool = True) -> None:
    """The floor: the held-out real test images scored exactly like samples."""
    check_floor_reference(dataset_cfg(params, dataset)["score"], dataset)
    _score_real_inception(params, dataset, progress)


def _load_reference(dataset: str, scfg: dict) -> dict:
    from pipeline.inception import load_features

    path = paths.reference_features(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the reference stage (python -m pipeline reference --dataset "
                                f"{dataset})")
    feats = load_features(path)
    n = len(next(iter(feats.values())))
    if n != scfg["n_reference"]:
        raise RuntimeError(f"{path} holds features of {n} images, but params.yaml asks for n_reference "
                           f"{scfg['n_reference']}: rerun the reference stage (python -m pipeline reference "
                           f"--dataset {dataset})")
    return feats


def _inception_scores(images: np.ndarray, ref: dict, scfg: dict, weights, progress: bool) -> dict[str, float]:
    from pipeline.inception import extract, scores

    feats = extract(images, weights, batch_size=scfg["batch_size"], device=pick_device(None), progress=progress)
    s = scores(feats, ref, kid_subsets=scfg["kid_subsets"],
               kid_subset_size=min(scfg["kid_subset_size"], len(images), scfg["n_reference"]),
               isc_splits=scfg["isc_splits"])
    return {"fid": s["fid"], "inception_score": s["inception_score_mean"],
            "inception_score_std": s["inception_score_std"], "kid": s["kid_mean"], "kid_std": s["kid_std"],
            "fid_cleanfid_clean": s["fid_cleanfid_clean"],
            "fid_cleanfid_legacy_tensorflow": s["fid_cleanfid_legacy_tensorflow"]}


def _protocol(scfg: dict, n_samples: int) -> dict:
    import cleanfid
    import torch_fidelity

    return {"reference": scfg["reference"], "n_reference": scfg["n_reference"], "n_samples": n_samples,
            "implementation": f"torch-fidelity {torch_fidelity.__version__} (FID/IS/KID, inception-v3-compat); "
                              f"clean-fid {getattr(cleanfid, '__version__', '?')} (fid_cleanfid_*)",
            "isc_splits": scfg["isc_splits"], "kid_subsets": scfg["kid_subsets"]}


def _score_inception(params: dict, dataset: str, method: str, seed: int, progress: bool) -> None:
    """FID, IS, KID (torch-fidelity) and clean-FID (clean-fid, two modes) of both sample sets."""
    scfg = dataset_cfg(params, dataset)["score"]
    weights = inception_weights(scfg)
    inception_precision()
    ref = _load_reference(dataset, scfg)
    with np.load(paths.samples(dataset, method, seed), allow_pickle=False) as z:
        keys = list(z.files)
        final = "revised" if "revised" in keys else "vae"
        # One sample set in memory at a time; extract() streams it through Inception in batches.
        results = {key: _inception_scores(z[key], ref, scfg, weights, progress) for key in keys}
        n = int(z[final].shape[0])
    out = _protocol(scfg, n)
    out.update(results[final])
    if "vae" in results:  # the proposal's own scores; the short-run EBM has none
        out.update({f"{k}_vae": v for k, v in results["vae"].items()})
    write_json(paths.metrics(dataset, method, seed), out)
    log.info("%s seed %d on %s: FID %.2f (proposal only %s), IS %.2f", method, seed, dataset, out["fid"],
             out.get("fid_vae"), out["inception_score"])


def _score_real_inception(params: dict, dataset: str, progress: bool) -> None:
    scfg = dataset_cfg(params, dataset)["score"]
    weights = inception_weights(scfg)
    inception_precision()
    ref = _load_reference(dataset, scfg)
    data = load_prepared(paths.prepared(dataset))
    out = _protocol(scfg, int(len(data.x_test)))
    out.update(_inception_scores(data.x_test, ref, scfg, weights, progress))
    write_json(paths.metrics(dataset, "real"), out)
    log.info("real test split on %s: FID %.2f, IS %.2f", dataset, out["fid"], out["inception_score"])
