"""Stage reference: Inception features of the real reference images of every FID protocol, computed once.

Protocols (params.yaml ``score.protocols``) that share a reference set and a conversion share one
feature pass: the features of the largest of them are stored and each protocol takes its first
``n_reference`` rows (the reference is always the first N images of its set).
"""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import write_npz
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.pixels import official_roundtrip
from pipeline.stages.common import EMBEDDED, log, pick_device
from pipeline.stages.weights import inception_precision, inception_weights


def reference_images(data, which: str, n: int, dataset: str, where: str = "score.n_reference") -> np.ndarray:
    """The first ``n`` images of the reference set (official protocol: the first N training images)."""
    pool = {"train": lambda: data.x_train, "test": lambda: data.x_test,
            "train+test": lambda: np.concatenate([data.x_train, data.x_test])}[which]()
    if n > len(pool):
        raise ValueError(f"datasets.{dataset}.{where} = {n}, but the '{which}' set of {dataset} has only "
                         f"{len(pool)} images: lower n_reference or choose a larger reference set")
    return pool[:n]


def group_of(protocol: dict) -> str:
    """The name of the feature set a protocol reads: its reference set and conversion."""
    return f"{protocol['reference']}.{protocol['conversion']}"


def reference_groups(protocols: dict) -> dict[str, tuple[str, str, int]]:
    """{group: (reference set, conversion, images to extract)}: the most any protocol of the group needs."""
    groups: dict[str, tuple[str, str, int]] = {}
    for p in protocols.values():
        g = group_of(p)
        n = max(p["n_reference"], groups.get(g, ("", "", 0))[2])
        groups[g] = (p["reference"], p["conversion"], n)
    return groups


def convert(images: np.ndarray, conversion: str) -> np.ndarray:
    """Real uint8 images as a protocol hands them to Inception (``official``: through the samples' conversion)."""
    return official_roundtrip(images) if conversion == "official" else images


def reference(params: dict, dataset: str, progress: bool = True) -> None:
    """Inception features of the real reference images, computed once for every score stage.

    Runs before any training in the workflows, so a missing weight file stops the run early.
    """
    from pipeline.inception import extract

    if dataset in EMBEDDED:
        raise ValueError(f"{dataset} is scored on its classifier's features; the reference stage is for "
                         "the paper's datasets")
    scfg = dataset_cfg(params, dataset)["score"]
    weights = inception_weights(scfg)
    inception_precision()
    data = load_prepared(paths.prepared(dataset))
    out = {}
    for g, (which, conversion, n) in reference_groups(scfg["protocols"]).items():
        ref = convert(reference_images(data, which, n, dataset, "score.protocols.*.n_reference"), conversion)
        log.info("Inception features of the first %d %s images of %s (conversion: %s)", n, which, dataset, conversion)
        feats = extract(ref, weights, batch_size=scfg["batch_size"], device=pick_device(None), progress=progress)
        out.update({f"{g}/{k}": np.asarray(v, dtype=np.float32) for k, v in feats.items()})
    write_npz(paths.reference_features(dataset), **out)


def load_references(dataset: str, protocols: dict) -> dict[str, dict[str, np.ndarray]]:
    """{protocol: its reference features} (its group's first ``n_reference`` rows), checked; the file is read
    once, each group's arrays once, whatever the number of protocols sharing them."""
    from pipeline.inception import FEATURE_KEYS

    path = paths.reference_features(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the reference stage (python -m pipeline reference --dataset "
                                f"{dataset})")
    wanted = {group_of(p) for p in protocols.values()}
    with np.load(path) as z:
        groups = {g: {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(g + "/")} for g in wanted}
    out = {}
    for name, protocol in protocols.items():
        g, n = group_of(protocol), protocol["n_reference"]
        feats = groups[g]
        missing = [k for k in FEATURE_KEYS if k not in feats]
        if missing or len(feats[FEATURE_KEYS[0]]) < n:
            have = len(feats[FEATURE_KEYS[0]]) if not missing else 0
            raise RuntimeError(f"{path} holds {have} images' features of the '{g}' reference set, but params.yaml's "
                               f"protocol asks for {n}: rerun the reference stage (python -m pipeline reference "
                               f"--dataset {dataset})")
        out[name] = {k: v[:n] for k, v in feats.items()}
    return out
