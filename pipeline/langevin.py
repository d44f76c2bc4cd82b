"""Langevin revision on the EBM p_θ(x) ∝ exp(f_θ(x)) · N(x; 0, σ²I).

    x ← x − (δ²/2) · (x/σ² − ∂f_θ(x)/∂x)  [+ δ·ε,  ε ~ N(0, I)]

The official code has the noise term commented out (a deterministic gradient revision); the paper
writes Langevin dynamics with noise. ``noise=False`` is the official default.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off parameter gradients for the duration, so revision builds no graph for θ."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def langevin_step(
    ebm: nn.Module, x: torch.Tensor, step_size: float, ref_sigma: float, noise: torch.Tensor | None = None,
    grads: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """One revision step from ``x`` (no graph is kept); ``noise`` is ε, or None for the official step.

    ``grads``, when given, receives ∂Σ_b f(x_b)/∂x of this step.
    """
    x = x.detach().requires_grad_(True)
    (grad_f,) = torch.autograd.grad(ebm(x).sum(), x)
    if grads is not None:
        grads.append(grad_f.detach())
    with torch.no_grad():
        x_new = x - 0.5 * step_size**2 * (x / ref_sigma**2 - grad_f)
        if noise is not None:
            x_new = x_new + step_size * noise
    return x_new.detach()


def revise(
    ebm: nn.Module,
    x: torch.Tensor,
    steps: int,
    step_size: float,
    ref_sigma: float,
    noise: bool = False,
    generator: torch.Generator | None = None,
    grads: list[torch.Tensor] | None = None,
    keep: torch.Tensor | None = None,
    trajectory: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``steps`` Langevin steps on the EBM from ``x``; return the revised batch (detached).

    ``grads``, when given, receives the EBM gradient of every step (for the parity check).
    ``keep`` (bool, broadcastable to ``x``): those pixels are put back to their values in the starting
    ``x`` after every step (the official ``inpaint``: the visible part is clamped), by selection, so
    they stay bit-exact. ``trajectory``, when given, receives x before the first step and after each.
    """
    start = x
    if trajectory is not None:
        trajectory.append(x.detach())
    with frozen(ebm):
        for _ in range(steps):
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if noise else None
            x = langevin_step(ebm, x, step_size, ref_sigma, eps, grads)
            if keep is not None:
                x = torch.where(keep, start, x)
            if trajectory is not None:
                trajectory.append(x)
    return x
