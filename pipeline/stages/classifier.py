"""Stage classifier: the embedded dataset's feature extractor (fd_<dataset>, kid_<dataset>)."""

from __future__ import annotations

from pipeline import paths
from pipeline.atomic import all_or_none, write_json, write_torch
from pipeline.config import dataset_cfg, score_name
from pipeline.data import load_prepared
from pipeline.stages.common import log


def classifier(params: dict, dataset: str, progress: bool = True) -> None:
    """Train the domain feature extractor for fd_<dataset>/kid_<dataset>; fail if it is not accurate enough."""
    from pipeline.features import train_classifier

    cfg = dataset_cfg(params, dataset)["classifier"]
    data = load_prepared(paths.prepared(dataset))
    ckpt, acc = train_classifier(
        data.x_train, data.y_train, data.x_test, data.y_test, width=cfg["width"], feat_dim=cfg["feat_dim"],
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"],
    )
    log.info("classifier test accuracy %.4f on %d held-out images", acc, len(data.y_test))
    if acc < cfg["min_accuracy"]:
        raise RuntimeError(
            f"the {dataset} feature classifier reached test accuracy {acc:.4f} < min_accuracy "
            f"{cfg['min_accuracy']} (params.yaml datasets.{dataset}.classifier): its features would not be "
            f"trustworthy for fd_{score_name(dataset)}. Train longer (epochs) or wider (width)."
        )
    with all_or_none(paths.classifier(dataset), paths.classifier_metrics(dataset)):
        write_torch(paths.classifier(dataset), ckpt)
        write_json(paths.classifier_metrics(dataset), {"test_accuracy": acc, "n_test": int(len(data.y_test))})

