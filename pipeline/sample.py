"""Sampling: a proposal (VAE or generator sample, or uniform noise for the short-run EBM) → Langevin revision
on the EBM → uint8 images. Pictures: ``pipeline.pictures``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pipeline.langevin import revise
from pipeline.pixels import to_uint8
from pipeline.teaching import PARTS, part, propose, uniform_noise


def generate(
    models: dict[str, nn.Module],
    n: int,
    chunk: int,
    z_dim: int,
    langevin: dict | None,
    generator: torch.Generator,
    progress: bool = True,
    noise_init: dict | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> dict[str, np.ndarray]:
    """``n`` VAE samples (``vae``) and, when ``langevin`` is given, their revisions (``revised``).

    ``vae`` holds the proposal x̃ = g(z) of whichever net proposes (the VAE's decoder, or the CoopNets
    generator). With ``noise_init`` (the short-run EBM) chains start from uniform noise instead and
    only ``revised`` is returned (``image_shape`` C×H×W then gives the chains' shape).

    The generator's BatchNorm uses batch statistics (official quirk), so samples are drawn in
    chunks of the batch size seen in training and a short last chunk is drawn full and cut.
    """
    device = next(next(iter(models.values())).parameters()).device
    out: dict[str, list[np.ndarray]] = {} if noise_init is not None else {"vae": []}
    if langevin is not None:
        out["revised"] = []
    for m in models.values():
        m.train()  # official: BN on batch statistics at test time too; no dropout in these nets
    for start in tqdm(range(0, n, chunk), desc="sample", unit="batch", disable=not progress):
        keep = min(chunk, n - start)
        with part(PARTS[0]):  # the ranges python -m pipeline bench splits the time by
            if noise_init is not None:
                x = uniform_noise(chunk, tuple(image_shape), noise_init, generator, device)
            else:
                x = propose(models["decoder"], chunk, z_dim, generator, device)
                out["vae"].append(to_uint8(x[:keep]))
        if langevin is not None:
            with part(PARTS[1]):
                x = revise(models["ebm"], x, langevin["test_steps"], langevin["step_size"], langevin["ref_sigma"],
                           langevin["noise"], generator)
                out["revised"].append(to_uint8(x[:keep]))
    return {k: np.concatenate(v) for k, v in out.items()}

