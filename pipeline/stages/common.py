"""What several stages share: the method lists, the device, the nets' architecture, a run's config."""

from __future__ import annotations

import logging

import torch

from pipeline.config import method_cfg

log = logging.getLogger("pipeline")
# Trained here: each is one step function in pipeline.teaching.STEPS; `official` is imported, not trained.
METHODS = ("coopvaebm", "coopvaebm-noise", "vae", "ebm", "coopnets")
# Methods whose samples are Langevin revisions on an EBM (the others sample their proposal only).
REVISED = ("coopvaebm", "coopvaebm-noise", "ebm", "coopnets", "official")
# Scored on its own classifier's features (fd_<dataset>); every other dataset with Inception
# (pipeline.codedeps.EMBEDDED says the same to the workflows; tests/test_codedeps.py keeps them equal).
EMBEDDED = ("digits", "fashion-mnist")


def pick_device(name: str | None) -> torch.device:
    """The named torch device, else CUDA when available, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def arch_of(data_shape: tuple[int, ...], nets_cfg: dict) -> dict:
    """The nets' architecture a checkpoint records: image channels and size (N×H×W×C data) and params.yaml nets."""
    return {"channels": int(data_shape[3]), "size": int(data_shape[1]), **nets_cfg}


def run_cfg(params: dict, dataset: str, method: str, seed: int) -> dict:
    """The method's params section with the run's ``seed`` in it (what the trainer and the resume fingerprint read).

    The seed must be one of the method's ``seeds`` in params.yaml, so that every run the workflows
    plan is a configured one.
    """
    mcfg = method_cfg(params, dataset, method)
    seeds = mcfg.get("seeds", [0])
    if seed not in seeds:
        raise ValueError(f"seed {seed} is not among datasets.{dataset}.methods.{method}.seeds {seeds} in params.yaml")
    return {**{k: v for k, v in mcfg.items() if k != "seeds"}, "seed": int(seed)}


def maybe_compile(models: dict[str, torch.nn.Module], mcfg: dict) -> None:
    """``compile: true``: torch.compile each net in place (its state_dict keys stay the same)."""
    if mcfg.get("compile", False):
        for m in models.values():
            m.compile()


def check_floor_reference(scfg: dict, dataset: str) -> None:
    """The real-data floor scores the test split against the training split: refuse another reference."""
    if scfg["reference"] != "train":
        raise RuntimeError("the real-data floor scores the test split against the training split; "
                           f"datasets.{dataset}.score.reference must be 'train' for it to mean anything")
