"""What the four experiment stages (completion, reconstruction, interpolation, trajectory) share:
the run's nets and config, and the per-pixel MSE."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import paths
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.precision import apply_precision
from pipeline.pixels import to_float
from pipeline.stages.checkpoints import load_checkpoint
from pipeline.stages.common import arch_of, pick_device, run_cfg


def setup(params: dict, dataset: str, method: str, seed: int, device: str | None):
    """(experiments config, method config, data, arch, models, generator) for an experiment stage."""
    from pipeline.teaching import NETS

    if method not in NETS or not {"ebm", "encoder", "decoder"} <= set(NETS[method]):
        raise ValueError(f"the experiments need a VAE and an EBM; method {method!r} has "
                         f"{', '.join(NETS.get(method, ())) or 'no nets trained here'}")
    dcfg, mcfg = dataset_cfg(params, dataset), run_cfg(params, dataset, method, seed)
    if "experiments" not in dcfg:
        raise ValueError(f"params.yaml has no datasets.{dataset}.experiments section (n_images, n_show, cols, "
                         "interpolation, trajectory, seed): add one to run the experiments on it")
    apply_precision(mcfg.get("precision", "fp32"))  # the run's arithmetic, as in its sampling
    dev = pick_device(device)
    data = load_prepared(paths.prepared(dataset))
    arch = arch_of(data.x_train.shape, dcfg["nets"])
    models = load_checkpoint(paths.checkpoint(dataset, method, seed), dataset, method, arch, dev, seed)
    for m in models.values():
        m.train()  # official: BN on batch statistics at test time too
    gen = torch.Generator(device=dev)
    gen.manual_seed(dcfg["experiments"]["seed"])
    return dcfg["experiments"], mcfg, data, arch, models, gen


def mse(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Per-pixel mean squared error of two uint8 image sets in the nets' [−1, 1] scale (over ``where``)."""
    d = (to_float(a) - to_float(b)).pow(2).permute(0, 2, 3, 1).numpy()
    return float(d[where].mean() if where is not None else d.mean())
