"""The experiments of the official code, as functions of the trained nets (no files: stages save results).

  completion      official ``inpaint``: bottom half hidden; VAE encode → decode → Langevin revision
                  with the visible half clamped every step
  reconstruction  official ``recon``: encoder → decoder → Langevin refinement of real images
  interpolation   official ``inter``: linear paths between pairs of codes z, decoded and revised
  trajectory      official ``visual``: the Langevin chain from x̃ to x̂, step by step

Codes are the encoder's mean (no ε draw), so completion and reconstruction are deterministic given the
nets (and, for the official mnist nets, whose encoder applies dropout in every call, given the
experiment's generator, from which the dropout draws); the generator's BatchNorm uses batch statistics (official quirk), so images go through the nets in
chunks of ``chunk`` (the n_chains seen in training). Images are float N×C×H×W in [−1, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pipeline.langevin import revise

def visible_mask(x: torch.Tensor) -> torch.Tensor:
    """True on the top half of every image (rows < H/2), the part completion keeps; broadcastable to ``x``."""
    h = x.shape[2]
    rows = torch.arange(h, device=x.device) < h // 2
    return rows.view(1, 1, h, 1).expand(1, x.shape[1], h, x.shape[3])


def _lv(langevin: dict) -> tuple[int, float, float, bool]:
    return langevin["test_steps"], langevin["step_size"], langevin["ref_sigma"], langevin["noise"]


def _chunks(x: torch.Tensor, chunk: int):
    for i in range(0, len(x), chunk):
        yield x[i:i + chunk]


def encode_decode(models: dict[str, nn.Module], x: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """g(μ_φ(x)): the VAE's reconstruction from the encoder's mean code (no graph).

    ``generator`` feeds the mnist encoder's dropout (the official code applies it here too); the
    cifar encoder draws nothing.
    """
    with torch.no_grad():
        mean, _ = models["encoder"](x, generator=generator)
        return models["decoder"](mean).float()


def complete(models: dict[str, nn.Module], x: torch.Tensor, langevin: dict, chunk: int,
             generator: torch.Generator | None = None, fill: float = 0.0) -> dict[str, torch.Tensor]:
    """Fill the bottom half of ``x``: {``masked``, ``vae`` (decoded, visible half put back), ``completed``}.

    ``masked`` holds ``fill`` on the hidden half (params.yaml ``experiments.fill``).
    ``completed`` is the Langevin revision of ``vae`` with the visible half clamped to ``x`` after every
    step (by selection: bit-exact).
    """
    out: dict[str, list[torch.Tensor]] = {"masked": [], "vae": [], "completed": []}
    steps, step_size, ref_sigma, noise = _lv(langevin)
    for xb in _chunks(x, chunk):
        keep = visible_mask(xb)
        masked = torch.where(keep, xb, torch.full_like(xb, fill))
        vae = torch.where(keep, xb, encode_decode(models, masked, generator))
        completed = revise(models["ebm"], vae, steps, step_size, ref_sigma, noise, generator, keep=keep)
        for k, v in (("masked", masked), ("vae", vae), ("completed", completed)):
            out[k].append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def reconstruct(models: dict[str, nn.Module], x: torch.Tensor, langevin: dict, chunk: int,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """{``vae``: g(μ_φ(x)), ``refined``: its Langevin revision} for real images ``x``."""
    out: dict[str, list[torch.Tensor]] = {"vae": [], "refined": []}
    steps, step_size, ref_sigma, noise = _lv(langevin)
    for xb in _chunks(x, chunk):
        vae = encode_decode(models, xb, generator)
        out["vae"].append(vae)
        out["refined"].append(revise(models["ebm"], vae, steps, step_size, ref_sigma, noise, generator))
    return {k: torch.cat(v) for k, v in out.items()}


def interpolate(models: dict[str, nn.Module], n_pairs: int, n_steps: int, z_dim: int, langevin: dict,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Linear paths z = (1 − a)·z₀ + a·z₁, a = 0 … 1 in ``n_steps``, for ``n_pairs`` pairs z₀, z₁ ~ N(0, I).

    Returns {``decoded``, ``revised``}, path-major (pair p, step s at index p·n_steps + s).
    """
    device = next(models["decoder"].parameters()).device
    z0 = torch.randn(n_pairs, 1, z_dim, generator=generator, device=device)
    z1 = torch.randn(n_pairs, 1, z_dim, generator=generator, device=device)
    a = torch.linspace(0.0, 1.0, n_steps, device=device).view(1, n_steps, 1)
    z = ((1 - a) * z0 + a * z1).reshape(n_pairs * n_steps, z_dim)
    with torch.no_grad():
        decoded = models["decoder"](z).float()
    steps, step_size, ref_sigma, noise = _lv(langevin)
    return {"decoded": decoded, "revised": revise(models["ebm"], decoded, steps, step_size, ref_sigma, noise,
                                                  generator)}


def trajectory(models: dict[str, nn.Module], n_chains: int, z_dim: int, langevin: dict,
               generator: torch.Generator) -> torch.Tensor:
    """The Langevin chains from x̃ = g(z) (``n_chains`` of them), every step: chains × (steps + 1) × C×H×W."""
    device = next(models["decoder"].parameters()).device
    z = torch.randn(n_chains, z_dim, generator=generator, device=device)
    with torch.no_grad():
        x = models["decoder"](z).float()
    states: list[torch.Tensor] = []
    steps, step_size, ref_sigma, noise = _lv(langevin)
    revise(models["ebm"], x, steps, step_size, ref_sigma, noise, generator, trajectory=states)
    return torch.stack(states, dim=1)
