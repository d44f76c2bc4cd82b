"""Stage prepare: decode a dataset's real files to data/prepared/<dataset>.npz."""

from __future__ import annotations

import importlib

from pipeline import paths
from pipeline.config import dataset_cfg
from pipeline.data import DataError, save_prepared
from pipeline.stages.common import log


def prepare(params: dict, dataset: str, progress: bool = True) -> None:
    """Decode the dataset's real files to ``data/prepared/<dataset>.npz`` + JSON manifest.

    Nothing is written unless decoding succeeded: a missing or corrupt archive raises ``DataError``.
    """
    cfg = dataset_cfg(params, dataset)["prepare"]
    name = dataset.replace("-", "_")  # fashion-mnist -> pipeline/data/fashion_mnist.py (pipeline.codedeps: the same)
    try:
        module = importlib.import_module(f"pipeline.data.{name}")
    except ModuleNotFoundError:
        raise DataError(f"dataset '{dataset}' has no prepare code (pipeline/data/{name}.py)") from None
    prepared = module.prepare(cfg)
    save_prepared(prepared, paths.prepared(dataset), paths.manifest(dataset))
    log.info("prepared %s: train %s, test %s (%s)", dataset, prepared.x_train.shape, prepared.x_test.shape,
             prepared.source)

