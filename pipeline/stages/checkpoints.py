"""Checkpoints: the format the train stage writes and every later stage (and import-official) reads."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.atomic import read_torch, write_torch

# 2: the generator pads transposed convolutions as TF "SAME" does (format 1 computed another function)
CHECKPOINT_FORMAT = 2


def save_checkpoint(path: Path, dataset: str, method: str, arch: dict, models: dict[str, torch.nn.Module],
                    iterations: int) -> None:
    """Write the checkpoint format that ``load_checkpoint`` reads (tensors and plain values only)."""
    write_torch(path, {
        "format": CHECKPOINT_FORMAT,
        "dataset": dataset,
        "method": method,
        "arch": arch,
        "iterations": iterations,
        "models": {k: m.state_dict() for k, m in models.items()},
    })


def load_checkpoint(path: Path, dataset: str, method: str, arch: dict, device: torch.device, seed: int = 0) -> dict:
    """Load a checkpoint with ``weights_only=True`` and rebuild its nets; refuse one from another config."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found: run the train stage "
                                f"(python -m pipeline train --dataset {dataset} --method {method} --seed {seed}).")
    ckpt = read_torch(path, CHECKPOINT_FORMAT, "checkpoint", "Delete it and rerun the train stage.",
                      map_location=device)
    if ckpt["arch"] != arch:
        diff = {k: (ckpt["arch"].get(k), arch.get(k)) for k in set(arch) | set(ckpt["arch"])
                if ckpt["arch"].get(k) != arch.get(k)}
        raise RuntimeError(f"{path} was trained with another architecture than params.yaml asks for "
                           f"(key: (checkpoint, params)) {diff}. Retrain, or restore the params it was made with.")
    return models_from_states(arch, ckpt["models"], device)


def models_from_states(arch: dict, states: dict[str, dict], device: torch.device) -> dict[str, torch.nn.Module]:
    """Nets of ``arch`` holding the given state dicts (by net name), on ``device``, channels-last as in training."""
    from pipeline.nets import build_models

    models = build_models(arch["channels"], arch["size"], {k: arch[k] for k in arch if k not in ("channels", "size")})
    out = {}
    for name, state in states.items():
        models[name].load_state_dict(state)
        out[name] = models[name].to(device, memory_format=torch.channels_last)
    return out

