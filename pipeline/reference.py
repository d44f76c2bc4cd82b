"""A straightforward port of one official training iteration, kept as the benchmark's baseline.

This is what a first PyTorch port of the official TF1 ``train`` loop looks like: NCHW tensors, fp32,
eager, and the obvious autograd calls. In particular the Langevin gradient is taken with
``energy.sum().backward()`` and ``x.grad``, which also computes (and accumulates) every EBM weight
gradient at every step, only for ``zero_grad`` to throw them away before the EBM update.

It computes the same function as ``pipeline.teaching.teaching_step`` (same random draws, in the same
order, from the same generator): ``tests/test_bench.py`` checks one step of each from one seed agrees
to fp32 tolerance. ``python -m pipeline bench`` times both and prints the ratio.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def reference_step(models: dict[str, nn.Module], optims: dict[str, torch.optim.Optimizer], x_data: torch.Tensor,
                   cfg: dict, z_dim: int, generator: torch.Generator) -> dict[str, float]:
    """One iteration of variational MCMC teaching, written the obvious way; returns float losses."""
    ebm, enc, dec = models["ebm"], models["encoder"], models["decoder"]
    lv = cfg["langevin"]
    step, sigma = lv["step_size"], lv["ref_sigma"]

    # 1. VAE proposal
    z = torch.randn(cfg["n_chains"], z_dim, generator=generator, device=x_data.device)
    x = dec(z).detach()
    x_tilde = x.clone()

    # 2. Langevin revision
    for _ in range(lv["train_steps"]):
        noise = torch.randn(x.shape, generator=generator, device=x.device) if lv["noise"] else None
        x = x.detach().requires_grad_(True)
        ebm(x).sum().backward()
        x = x - 0.5 * step**2 * (x / sigma**2 - x.grad)
        if noise is not None:
            x = x + step * noise
    x_hat = x.detach()

    # 3. EBM update
    optims["ebm"].zero_grad()
    loss_ebm = ebm(x_hat).mean() - ebm(x_data).mean()
    loss_ebm.backward()
    optims["ebm"].step()

    # 4. VAE update on the revised samples
    mean, logstd = enc(x_hat, generator=generator)  # the mnist encoder's dropout draws come first, as in ours
    eps = torch.randn(mean.shape, generator=generator, device=x_data.device)
    recon = dec(mean + eps * torch.exp(logstd))
    rec = ((recon - x_hat) ** 2).sum(dim=(1, 2, 3)).mean()
    kl = (-0.5 * (1 + 2 * logstd - mean**2 - torch.exp(2 * logstd)).sum(dim=1)).mean()
    loss_vae = rec + cfg["kl_weight"] * kl
    optims["vae"].zero_grad()
    loss_vae.backward()
    optims["vae"].step()

    return {"loss_ebm": loss_ebm.item(), "loss_vae": loss_vae.item(),
            "revision_l2": (x_hat - x_tilde).flatten(1).norm(dim=1).mean().item()}
