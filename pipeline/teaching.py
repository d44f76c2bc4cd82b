"""Variational MCMC teaching (the paper's algorithm) and the VAE-alone baseline.

One ``teaching_step`` is the official ``train`` iteration:
  1. z ~ N(0, I) for n_chains chains; x̃ = g_α(z)
  2. x̂ = Langevin revision of x̃ on the EBM (``langevin.revise``)
  3. EBM: minimise mean f_θ(x̂) − mean f_θ(x_data)         (Adam, β1 = 0.5)
  4. VAE: minimise mean[Σ_pixels (g(z) − x̂)² + w·KL], z ~ q_φ(z|x̂)   (Adam, β1 = 0.5)
Learning rates decay as lr · rate^(epoch / every_epochs) (TF ``exponential_decay``, not staircase,
with the global step counted in epochs). Nothing here reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pipeline.langevin import revise


@dataclass
class Trainer:
    """The nets, their optimisers and schedulers, and the RNG of one training run."""

    models: dict[str, nn.Module]
    optims: dict[str, torch.optim.Optimizer]
    scheds: dict[str, torch.optim.lr_scheduler.LRScheduler]
    generator: torch.Generator


def lr_factor(epoch: int, decay: dict) -> float:
    """Multiplier of the base learning rate in ``epoch`` (0-based): rate^((epoch + 1) / every_epochs).

    The official loop increments the global step at the *start* of each epoch, so epoch 0 already
    trains at lr · rate^(1/every_epochs).
    """
    return float(decay["rate"]) ** ((epoch + 1) / float(decay["every_epochs"]))


def make_trainer(method: str, models: dict[str, nn.Module], cfg: dict, device: torch.device) -> Trainer:
    """Adam optimisers (official β1) and per-epoch exponential decay for ``method``'s nets."""
    vae_params = [*models["encoder"].parameters(), *models["decoder"].parameters()]
    optims = {"vae": _adam(vae_params, cfg["vae_optim"])}
    if method == "coopvaebm":
        optims["ebm"] = _adam(models["ebm"].parameters(), cfg["ebm_optim"])
    scheds = {
        k: torch.optim.lr_scheduler.LambdaLR(o, lambda e: lr_factor(e, cfg["lr_decay"])) for k, o in optims.items()
    }
    gen = torch.Generator(device=device)
    gen.manual_seed(int(cfg["seed"]))
    return Trainer(models, optims, scheds, gen)


def _adam(params, optim_cfg: dict) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=optim_cfg["lr"], betas=(optim_cfg["beta1"], 0.999))


def kl_to_standard_normal(mean: torch.Tensor, logstd: torch.Tensor) -> torch.Tensor:
    """KL(N(m, exp(s)²) ‖ N(0, I)) per sample: −½ Σ (1 + 2s − m² − exp(2s))."""
    return -0.5 * (1 + 2 * logstd - mean.pow(2) - torch.exp(2 * logstd)).sum(dim=1)


def vae_loss(
    encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, kl_weight: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch mean of Σ_pixels (g(z) − x)² + kl_weight·KL, with z = m + ε·exp(s); returns (loss, rec, kl)."""
    mean, logstd = encoder(x)
    eps = torch.randn(mean.shape, generator=generator, device=x.device, dtype=x.dtype)
    recon = decoder(mean + eps * torch.exp(logstd))
    rec = (recon - x).pow(2).flatten(1).sum(dim=1).mean()
    kl = kl_to_standard_normal(mean, logstd).mean()
    return rec + kl_weight * kl, rec, kl


def propose(decoder: nn.Module, n: int, z_dim: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """VAE ancestral sample: z ~ N(0, I), x̃ = g(z) (no graph)."""
    z = torch.randn(n, z_dim, generator=generator, device=device)
    with torch.no_grad():
        return decoder(z)


def teaching_step(tr: Trainer, x_data: torch.Tensor, cfg: dict, z_dim: int) -> dict[str, torch.Tensor]:
    """One iteration of variational MCMC teaching; returns detached scalars for the curves."""
    ebm, enc, dec = tr.models["ebm"], tr.models["encoder"], tr.models["decoder"]
    lv = cfg["langevin"]
    x_tilde = propose(dec, cfg["n_chains"], z_dim, tr.generator, x_data.device)
    x_hat = revise(ebm, x_tilde, lv["train_steps"], lv["step_size"], lv["ref_sigma"], lv["noise"], tr.generator)

    f_syn, f_obs = ebm(x_hat).mean(), ebm(x_data).mean()
    loss_ebm = f_syn - f_obs
    tr.optims["ebm"].zero_grad(set_to_none=True)
    loss_ebm.backward()
    tr.optims["ebm"].step()

    loss_vae, rec, kl = vae_loss(enc, dec, x_hat, cfg["kl_weight"], tr.generator)
    tr.optims["vae"].zero_grad(set_to_none=True)
    loss_vae.backward()
    tr.optims["vae"].step()

    with torch.no_grad():
        revision = (x_hat - x_tilde).pow(2).flatten(1).sum(1).sqrt().mean()
    return {
        "loss_ebm": loss_ebm.detach(),
        "energy_gap": (f_obs - f_syn).detach(),
        "loss_vae": loss_vae.detach(),
        "vae_rec": rec.detach(),
        "vae_kl": kl.detach(),
        "revision_l2": revision,
    }


def vae_step(tr: Trainer, x_data: torch.Tensor, cfg: dict, z_dim: int) -> dict[str, torch.Tensor]:
    """One iteration of the baseline: the same VAE trained by variational Bayes on the data."""
    loss_vae, rec, kl = vae_loss(tr.models["encoder"], tr.models["decoder"], x_data, cfg["kl_weight"], tr.generator)
    tr.optims["vae"].zero_grad(set_to_none=True)
    loss_vae.backward()
    tr.optims["vae"].step()
    return {"loss_vae": loss_vae.detach(), "vae_rec": rec.detach(), "vae_kl": kl.detach()}


STEPS: dict[str, Callable[[Trainer, torch.Tensor, dict, int], dict[str, torch.Tensor]]] = {
    "coopvaebm": teaching_step,
    "vae": vae_step,
}


class DivergenceError(RuntimeError):
    """Training produced a non-finite quantity."""


def train(
    method: str,
    tr: Trainer,
    x_train: torch.Tensor,
    cfg: dict,
    z_dim: int,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int], None] | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train for ``cfg['epochs']`` epochs over ``x_train`` (N×C×H×W in [−1, 1], already on the device).

    Minibatches are taken in dataset order every epoch, as in the official code (its shuffle
    permutation is built but unused); the remainder that does not fill a batch is dropped.
    Returns one row of curve values every ``log_every`` iterations.
    """
    step_fn = STEPS[method]
    bs = cfg["batch_size"]
    n_batches = x_train.shape[0] // bs
    if n_batches == 0:
        raise ValueError(f"batch_size {bs} is larger than the training set ({x_train.shape[0]} images)")
    total = cfg["epochs"] * n_batches
    curves: list[dict[str, float]] = []
    bar = tqdm(total=total, initial=start_epoch * n_batches, desc=f"train {method}", disable=not progress,
               unit="it", dynamic_ncols=True)
    for m in tr.models.values():
        m.train()
    for epoch in range(start_epoch, cfg["epochs"]):
        for b in range(n_batches):
            it = epoch * n_batches + b
            stats = step_fn(tr, x_train[b * bs:(b + 1) * bs], cfg, z_dim)
            if (it + 1) % cfg["log_every"] == 0 or it + 1 == total:
                # One host sync per logged row, not per iteration.
                values = torch.stack(list(stats.values())).tolist()
                row = {"step": it + 1, "epoch": epoch, "lr_vae": tr.optims["vae"].param_groups[0]["lr"]}
                row.update(dict(zip(stats.keys(), values)))
                bad = [k for k, v in row.items() if v != v or v in (float("inf"), float("-inf"))]
                if bad:
                    raise DivergenceError(f"non-finite {', '.join(bad)} at iteration {it + 1} (epoch {epoch})")
                curves.append(row)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_ebm", "loss_vae") if k in row})
            bar.update(1)
        for s in tr.scheds.values():
            s.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    return curves
