"""Stages score and score-real on the paper datasets: FID, IS, KID (torch-fidelity) and clean-FID, per FID protocol.

Both stages run the same scorer, on a run's samples or on the held-out real images, hence one module.
metrics.json holds the settings shared by every protocol at its top level and one block per protocol
(params.yaml ``score.protocols``): ``{"official": {"fid": …, "n_samples": 10000, …}, "50k-train": {…}}``.
"""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.stages.common import check_floor_reference, log, pick_device
from pipeline.stages.reference import convert, load_references
from pipeline.stages.weights import inception_precision, inception_weights


def score(params: dict, dataset: str, method: str, seed: int = 0, progress: bool = True) -> None:
    """Score run (method, seed)'s samples (revised and proposal-only, where each exists) under every protocol."""
    _score_inception(params, dataset, method, seed, progress)


def score_real(params: dict, dataset: str, progress: bool = True) -> None:
    """The floor: the held-out real test images scored exactly like samples, under every protocol."""
    scfg = dataset_cfg(params, dataset)["score"]
    for p in scfg["protocols"].values():
        check_floor_reference(p, dataset)
    _score_real_inception(params, dataset, progress)


def inception_features(images: np.ndarray, scfg: dict, weights, progress: bool) -> dict[str, np.ndarray]:
    """``pipeline.inception.extract`` of uint8 N×H×W×3 images, ``scfg['batch_size']`` at a time."""
    from pipeline.inception import extract

    return extract(images, weights, batch_size=scfg["batch_size"], device=pick_device(None), progress=progress)


def inception_scores(feats: dict[str, np.ndarray], ref: dict, scfg: dict) -> dict[str, float]:
    """FID, IS, KID and both clean-FIDs from the features (``scfg``: kid_subsets, kid_subset_size, isc_splits)."""
    from pipeline.inception import scores

    n = len(next(iter(feats.values())))
    n_ref = len(next(iter(ref.values())))
    s = scores(feats, ref, kid_subsets=scfg["kid_subsets"], kid_subset_size=min(scfg["kid_subset_size"], n, n_ref),
               isc_splits=scfg["isc_splits"])
    return {"fid": s["fid"], "inception_score": s["inception_score_mean"],
            "inception_score_std": s["inception_score_std"], "kid": s["kid_mean"], "kid_std": s["kid_std"],
            "fid_cleanfid_clean": s["fid_cleanfid_clean"],
            "fid_cleanfid_legacy_tensorflow": s["fid_cleanfid_legacy_tensorflow"]}


def scorer_settings(scfg: dict) -> dict:
    """What metrics.json records of the scorer: the libraries' versions, the IS splits, KID subsets, protocols."""
    import cleanfid
    import torch_fidelity

    return {"implementation": f"torch-fidelity {torch_fidelity.__version__} (FID/IS/KID, inception-v3-compat); "
                              f"clean-fid {getattr(cleanfid, '__version__', '?')} (fid_cleanfid_*)",
            "isc_splits": scfg["isc_splits"], "kid_subsets": scfg["kid_subsets"],
            **({"protocols": list(scfg["protocols"])} if "protocols" in scfg else {})}


def _protocol_block(protocol: dict, n_samples: int) -> dict:
    return {"n_samples": n_samples, "reference": protocol["reference"], "n_reference": protocol["n_reference"],
            "conversion": protocol["conversion"]}


def _need(images: np.ndarray, protocols: dict, what: str) -> int:
    """The most samples any protocol takes; fail before Inception runs if the set is smaller."""
    need = max(p["n_samples"] for p in protocols.values())
    if len(images) < need:
        short = ", ".join(f"{k} ({p['n_samples']})" for k, p in protocols.items() if p["n_samples"] > len(images))
        raise RuntimeError(f"{what} holds {len(images)} images, but the protocols {short} score more: rerun the "
                           "sample stage with sample.n_samples at least that, or lower the protocols' n_samples")
    return need


def _score_inception(params: dict, dataset: str, method: str, seed: int, progress: bool) -> None:
    """FID, IS, KID (torch-fidelity) and clean-FID (clean-fid, two modes) of both sample sets, per protocol."""
    scfg = dataset_cfg(params, dataset)["score"]
    protocols = scfg["protocols"]
    weights = inception_weights(scfg)
    inception_precision()
    refs = load_references(dataset, protocols)
    samples = paths.samples(dataset, method, seed)
    out = scorer_settings(scfg)
    with np.load(samples, allow_pickle=False) as z:
        keys = list(z.files)
        final = "revised" if "revised" in keys else "vae"
        for key in keys:  # one sample set in memory at a time; extract() streams it through Inception
            images = z[key]
            feats = inception_features(images[:_need(images, protocols, f"{samples} ['{key}']")], scfg, weights,
                                       progress)
            for name, p in protocols.items():
                mine = {k: v[:p["n_samples"]] for k, v in feats.items()}
                block = out.setdefault(name, _protocol_block(p, p["n_samples"]))
                res = inception_scores(mine, refs[name], scfg)
                # the final samples' scores plain; the proposal's own with _vae (the short-run EBM has none)
                block.update(res if key == final else {f"{k}_vae": v for k, v in res.items()})
    write_json(paths.metrics(dataset, method, seed), out)
    for name in protocols:
        log.info("%s seed %d on %s, protocol %s: FID %.2f (proposal only %s), IS %.2f", method, seed, dataset, name,
                 out[name]["fid"], out[name].get("fid_vae"), out[name]["inception_score"])


def _score_real_inception(params: dict, dataset: str, progress: bool) -> None:
    scfg = dataset_cfg(params, dataset)["score"]
    weights = inception_weights(scfg)
    inception_precision()
    data = load_prepared(paths.prepared(dataset))
    out = scorer_settings(scfg)
    # The test split stands in for samples: it goes through the conversion the protocol applies to the
    # reference (samples come out of it already), and is scored whole (10,000 CIFAR-10 test images),
    # whatever n_samples the protocol takes of the samples.
    feats_of: dict[str, dict] = {}
    refs = load_references(dataset, scfg["protocols"])
    for name, p in scfg["protocols"].items():
        if p["conversion"] not in feats_of:
            feats_of[p["conversion"]] = inception_features(convert(data.x_test, p["conversion"]), scfg, weights,
                                                           progress)
        block = _protocol_block(p, int(len(data.x_test)))
        block.update(inception_scores(feats_of[p["conversion"]], refs[name], scfg))
        out[name] = block
    write_json(paths.metrics(dataset, "real"), out)
    for name in scfg["protocols"]:
        log.info("real test split on %s, protocol %s: FID %.2f, IS %.2f", dataset, name, out[name]["fid"],
                 out[name]["inception_score"])
