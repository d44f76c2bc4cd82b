"""Variational MCMC teaching (the paper's algorithm) and the methods it is compared with.

Every method is one step function in ``STEPS`` over the same nets, optimisers and loop (``train``):
``coopvaebm`` (and ``coopvaebm-noise``, the same step with ``langevin.noise: true``), ``vae`` (the
VAE trained alone on the data), ``ebm`` (short-run EBM: Langevin chains from uniform noise, no
VAE) and ``coopnets`` (CoopNets' MCMC teaching: a generator without encoder, regressed on x̂).

One ``teaching_step`` is the official ``train`` iteration:
  1. z ~ N(0, I) for n_chains chains; x̃ = g_α(z)
  2. x̂ = Langevin revision of x̃ on the EBM (``langevin.revise``)
  3. EBM: minimise mean f_θ(x̂) − mean f_θ(x_data)         (Adam, β1 = 0.5)
  4. VAE: minimise mean[Σ_pixels (g(z) − x̂)² + w·KL], z ~ q_φ(z|x̂)   (Adam, β1 = 0.5)
Learning rates decay as lr · rate^(epoch / every_epochs) (TF ``exponential_decay``, not staircase,
with the global step counted in epochs). Nothing here reads or writes files: resumable state goes
in and out as dicts (``trainer_state``, ``load_trainer_state``), saved by ``pipeline.resume``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch.profiler import record_function
from tqdm.auto import tqdm

from pipeline.langevin import revise

# teaching_step's parts as torch.profiler ranges (record_function; free when no profiler runs), named
# as the official iteration is split: ``python -m pipeline bench`` prints the time of each.
PARTS = ("generator sample", "Langevin revision", "descriptor update", "VAE update")
_sync_parts = False


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    """The ``record_function`` range of one part. Under ``synced_parts()`` on a CUDA machine the work queued
    before the part and in it is waited for at its edges, so the host range is the part's real time (kernels
    run asynchronously: without the waits a range says when its work was queued, not done)."""
    if _sync_parts:
        torch.cuda.synchronize()
    with record_function(name):
        yield
        if _sync_parts:
            torch.cuda.synchronize()


@contextlib.contextmanager
def synced_parts(on: bool = True) -> Iterator[None]:
    """Within this block ``part`` ranges synchronise CUDA at their edges (``python -m pipeline bench``'s split on a GPU)."""
    global _sync_parts
    old, _sync_parts = _sync_parts, on and torch.cuda.is_available()
    try:
        yield
    finally:
        _sync_parts = old


@dataclass
class Trainer:
    """The nets, their optimisers and schedulers, and the RNG of one training run."""

    models: dict[str, nn.Module]
    optims: dict[str, torch.optim.Optimizer]
    scheds: dict[str, torch.optim.lr_scheduler.LRScheduler]
    generator: torch.Generator


def lr_factor(epoch: int, decay: dict) -> float:
    """Multiplier of the base learning rate in ``epoch`` (0-based): rate^(epoch / every_epochs).

    The official global step starts at −1 and is incremented at the start of every epoch, so epoch
    k trains with global step k: epoch 0 at the base rate.
    """
    return float(decay["rate"]) ** (epoch / float(decay["every_epochs"]))


# The nets each method trains (``pipeline.stages.train`` builds all three from the seed, in the same
# order for every method, and keeps these).
NETS = {"coopvaebm": ("ebm", "encoder", "decoder"), "coopvaebm-noise": ("ebm", "encoder", "decoder"),
        "vae": ("encoder", "decoder"), "ebm": ("ebm",), "coopnets": ("ebm", "decoder")}


def make_trainer(method: str, models: dict[str, nn.Module], cfg: dict, device: torch.device) -> Trainer:
    """Adam optimisers (official β1) and per-epoch exponential decay for ``method``'s nets.

    ``vae``: encoder + decoder (``vae_optim``); ``gen``: the coopnets generator alone (``gen_optim``);
    ``ebm``: the descriptor (``ebm_optim``).
    """
    optims = {}
    if "encoder" in NETS[method]:
        vae_params = [*models["encoder"].parameters(), *models["decoder"].parameters()]
        optims["vae"] = make_adam(vae_params, cfg["vae_optim"])
    elif "decoder" in NETS[method]:
        optims["gen"] = make_adam(models["decoder"].parameters(), cfg["gen_optim"])
    if "ebm" in NETS[method]:
        optims["ebm"] = make_adam(models["ebm"].parameters(), cfg["ebm_optim"])
    scheds = {
        k: torch.optim.lr_scheduler.LambdaLR(o, lambda e: lr_factor(e, cfg["lr_decay"])) for k, o in optims.items()
    }
    gen = torch.Generator(device=device)
    gen.manual_seed(int(cfg["seed"]))
    return Trainer(models, optims, scheds, gen)


class TF1Adam(torch.optim.Adam):
    """Adam as TF1's ``tf.train.AdamOptimizer`` computes it.

    TF1 adds ε after the bias correction of the step size,
    w −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m/(√v + ε), where ``torch.optim.Adam`` divides by √v/√(1−β2ᵗ) + ε.
    The two agree exactly when PyTorch's ε at step t is ε/√(1−β2ᵗ) (3.2e-7 at t = 1 for ε = 1e-8),
    so this sets that before every step and lets PyTorch's implementation do the update. The
    difference matters in the first steps, where the descriptor's gradients are tiny: torch's
    placement moves the first descriptor step by up to 6.3e-3 per weight at lr 0.009.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float = 1e-8) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        for group in self.param_groups:
            group.setdefault("tf1_eps", eps)
            group.setdefault("tf1_t", 0)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            group["tf1_t"] += 1
            group["eps"] = group["tf1_eps"] / math.sqrt(1.0 - group["betas"][1] ** group["tf1_t"])
        return super().step(closure)


def make_adam(params, optim_cfg: dict) -> torch.optim.Adam:
    """Adam(lr, β1, β2 = 0.999, ε = 1e-8) with the ε placement ``optim_cfg['adam']`` names (default tf1)."""
    betas = (optim_cfg["beta1"], 0.999)
    if optim_cfg.get("adam", "tf1") == "torch":
        return torch.optim.Adam(params, lr=optim_cfg["lr"], betas=betas, eps=1e-8)
    return TF1Adam(params, lr=optim_cfg["lr"], betas=betas, eps=1e-8)


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 when autocast made it bf16/fp16; fp32 and fp64 tensors pass unchanged.

    Losses and Langevin updates stay fp32 under autocast, while the parity check's float64 replay
    of this very step (its rounding reference) must not be cut back to fp32 anywhere.
    """
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def kl_to_standard_normal(mean: torch.Tensor, logstd: torch.Tensor) -> torch.Tensor:
    """KL(N(m, exp(s)²) ‖ N(0, I)) per sample: −½ Σ (1 + 2s − m² − exp(2s))."""
    return -0.5 * (1 + 2 * logstd - mean.pow(2) - torch.exp(2 * logstd)).sum(dim=1)


def vae_loss(
    encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, kl_weight: float, generator: torch.Generator,
    eps: torch.Tensor | None = None, record: dict | None = None, dropout_u: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch mean of Σ_pixels (g(z) − x)² + kl_weight·KL, with z = m + ε·exp(s); returns (loss, rec, kl).

    ``eps`` replaces the draw of ε and ``dropout_u`` the mnist encoder's dropout draws (the parity
    check injects the official code's; otherwise both come from ``generator``, dropout first);
    ``record``, when given, receives the encoder outputs, the code, the reconstruction and the
    per-sample terms.
    """
    mean, logstd = (at_least_fp32(t) for t in encoder(x, generator=generator, dropout_u=dropout_u))
    if eps is None:
        eps = torch.randn(mean.shape, generator=generator, device=x.device, dtype=x.dtype)
    z = mean + eps * torch.exp(logstd)
    recon = at_least_fp32(decoder(z))
    rec_each = (recon - x).pow(2).flatten(1).sum(dim=1)
    kl_each = kl_to_standard_normal(mean, logstd)
    if record is not None:
        record.update(enc_mean=mean.detach(), enc_logstd=logstd.detach(), enc_z=z.detach(), x_recon=recon.detach(),
                      rec_per_sample=rec_each.detach(), kl_per_sample=kl_each.detach())
    rec, kl = rec_each.mean(), kl_each.mean()
    return rec + kl_weight * kl, rec, kl


def autocast(cfg: dict, device: torch.device) -> torch.autocast:
    """bf16 autocast when ``cfg['precision']`` is ``bf16`` (a speed switch; ``fp32``, the default, is exact).

    Only the nets' matmuls and convolutions run in bf16: images, Langevin updates, losses and
    optimiser states stay fp32.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.get("precision", "fp32") == "bf16")


def propose(decoder: nn.Module, n: int, z_dim: int, generator: torch.Generator, device: torch.device,
            z: torch.Tensor | None = None) -> torch.Tensor:
    """VAE ancestral sample: z ~ N(0, I) (or the given ``z``), x̃ = g(z) (no graph, fp32 also under autocast)."""
    if z is None:
        z = torch.randn(n, z_dim, generator=generator, device=device)
    with torch.no_grad():
        return at_least_fp32(decoder(z))


def teaching_step(tr: Trainer, x_data: torch.Tensor, cfg: dict, z_dim: int, draws: dict | None = None,
                  record: dict | None = None) -> dict[str, torch.Tensor]:
    """One iteration of variational MCMC teaching; returns detached scalars for the curves.

    ``draws`` may hold ``z`` (n_chains × z_dim), ``eps`` (the encoder's ε) and ``dropout_u`` (the mnist
    encoder's three dropout draws, NCHW) to use instead of drawing them; ``record``, when given, receives every intermediate (x̃, the Langevin gradient of
    each step, x̂, f per image, the VAE terms). Both exist for ``pipeline.parity``, which runs this
    very function against the official code's recorded values.
    """
    draws = draws or {}
    ebm, enc, dec = tr.models["ebm"], tr.models["encoder"], tr.models["decoder"]
    lv = cfg["langevin"]
    grads: list[torch.Tensor] | None = [] if record is not None else None
    with autocast(cfg, x_data.device):
        with part(PARTS[0]):
            x_tilde = propose(dec, cfg["n_chains"], z_dim, tr.generator, x_data.device, draws.get("z"))
        with part(PARTS[1]):
            x_hat = revise(ebm, x_tilde, lv["train_steps"], lv["step_size"], lv["ref_sigma"], lv["noise"],
                           tr.generator, grads=grads)
    with part(PARTS[2]):
        f_hat, f_data, loss_ebm, gap = learn_ebm(tr, cfg, x_hat, x_data)

    with part(PARTS[3]):
        with autocast(cfg, x_data.device):
            loss_vae, rec, kl = vae_loss(enc, dec, x_hat, cfg["kl_weight"], tr.generator, draws.get("eps"), record,
                                         draws.get("dropout_u"))
        tr.optims["vae"].zero_grad(set_to_none=True)
        loss_vae.backward()
        tr.optims["vae"].step()

    if record is not None:
        record.update(x_tilde=x_tilde, langevin_grads=grads, x_hat=x_hat, f_x_hat=f_hat.detach(),
                      f_x_data=f_data.detach())
    revision = revision_l2(x_hat, x_tilde)
    return {
        "loss_ebm": loss_ebm.detach(),
        "energy_gap": gap,
        "loss_vae": loss_vae.detach(),
        "vae_rec": rec.detach(),
        "vae_kl": kl.detach(),
        "revision_l2": revision,
    }


def revision_l2(x_hat: torch.Tensor, x_start: torch.Tensor) -> torch.Tensor:
    """Mean per-image L2 distance the Langevin revision moved the chains (a training curve)."""
    with torch.no_grad():
        return (x_hat - x_start).pow(2).flatten(1).sum(1).sqrt().mean()


def learn_ebm(tr: Trainer, cfg: dict, x_hat: torch.Tensor, x_data: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The descriptor's update, the same in every method with an EBM: minimise mean f(x̂) − mean f(x_data).

    Returns (f(x̂), f(x_data)) per image and the detached loss and energy gap mean f(x_data) − mean f(x̂).
    """
    ebm = tr.models["ebm"]
    with autocast(cfg, x_data.device):
        f_hat, f_data = at_least_fp32(ebm(x_hat)), at_least_fp32(ebm(x_data))
    f_syn, f_obs = f_hat.mean(), f_data.mean()
    loss_ebm = f_syn - f_obs
    tr.optims["ebm"].zero_grad(set_to_none=True)
    loss_ebm.backward()
    tr.optims["ebm"].step()
    return f_hat, f_data, loss_ebm.detach(), (f_obs - f_syn).detach()


def uniform_noise(n: int, shape: tuple[int, ...], init: dict, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Short-run EBM chain starts: x₀ ~ U[low, high]^(C×H×W) (Nijkamp et al. 2019 start from U[−1, 1])."""
    low, high = float(init["low"]), float(init["high"])
    return torch.rand((n, *shape), generator=generator, device=device) * (high - low) + low


def ebm_step(tr: Trainer, x_data: torch.Tensor, cfg: dict, z_dim: int) -> dict[str, torch.Tensor]:
    """One iteration of the short-run EBM: chains from uniform noise, Langevin, the EBM update; no VAE.

    x₀ ~ U[``noise_init``] (n_chains chains, fresh every iteration: non-persistent short run),
    x̂ = ``train_steps`` Langevin steps on the EBM, then the same descriptor update as coopvaebm.
    """
    lv = cfg["langevin"]
    x0 = uniform_noise(cfg["n_chains"], tuple(x_data.shape[1:]), cfg["noise_init"], tr.generator, x_data.device)
    with autocast(cfg, x_data.device):
        x_hat = revise(tr.models["ebm"], x0, lv["train_steps"], lv["step_size"], lv["ref_sigma"], lv["noise"],
                       tr.generator)
    _, _, loss_ebm, gap = learn_ebm(tr, cfg, x_hat, x_data)
    return {"loss_ebm": loss_ebm, "energy_gap": gap, "revision_l2": revision_l2(x_hat, x0)}


def coopnets_step(tr: Trainer, x_data: torch.Tensor, cfg: dict, z_dim: int,
                  draws: dict | None = None) -> dict[str, torch.Tensor]:
    """One iteration of CoopNets' MCMC teaching (Xie et al., AAAI 2018): no encoder.

    z ~ N(0, I), x̃ = g(z), x̂ = Langevin revision of x̃, the descriptor update as coopvaebm, then the
    generator regresses x̂ on the *same* z: minimise mean Σ_pixels (g(z) − x̂)². ``draws['z']`` may
    replace the draw of z (tests).
    """
    draws = draws or {}
    dec, lv = tr.models["decoder"], cfg["langevin"]
    z = draws.get("z")
    if z is None:
        z = torch.randn(cfg["n_chains"], z_dim, generator=tr.generator, device=x_data.device)
    with autocast(cfg, x_data.device):
        x_tilde = propose(dec, cfg["n_chains"], z_dim, tr.generator, x_data.device, z)
        x_hat = revise(tr.models["ebm"], x_tilde, lv["train_steps"], lv["step_size"], lv["ref_sigma"], lv["noise"],
                       tr.generator)
    _, _, loss_ebm, gap = learn_ebm(tr, cfg, x_hat, x_data)
    with autocast(cfg, x_data.device):
        loss_gen = (at_least_fp32(dec(z)) - x_hat).pow(2).flatten(1).sum(dim=1).mean()
    tr.optims["gen"].zero_grad(set_to_none=True)
    loss_gen.backward()
    tr.optims["gen"].step()
    return {"loss_ebm": loss_ebm, "energy_gap": gap, "loss_gen": loss_gen.detach(),
            "revision_l2": revision_l2(x_hat, x_tilde)}


def vae_step(tr: Trainer, x_data: torch.Tensor, cfg: dict, z_dim: int) -> dict[str, torch.Tensor]:
    """One iteration of the baseline: the same VAE trained by variational Bayes on the data."""
    with autocast(cfg, x_data.device):
        loss_vae, rec, kl = vae_loss(tr.models["encoder"], tr.models["decoder"], x_data, cfg["kl_weight"],
                                     tr.generator)
    tr.optims["vae"].zero_grad(set_to_none=True)
    loss_vae.backward()
    tr.optims["vae"].step()
    return {"loss_vae": loss_vae.detach(), "vae_rec": rec.detach(), "vae_kl": kl.detach()}


STEPS: dict[str, Callable[[Trainer, torch.Tensor, dict, int], dict[str, torch.Tensor]]] = {
    "coopvaebm": teaching_step,
    # the paper's text: Langevin dynamics with its noise term (params: langevin.noise true)
    "coopvaebm-noise": teaching_step,
    "vae": vae_step,
    "ebm": ebm_step,
    "coopnets": coopnets_step,
}


class DivergenceError(RuntimeError):
    """Training produced a non-finite or runaway quantity.

    ``iteration`` is the first bad iteration; ``last_good`` the last iteration handed to
    ``on_checkpoint`` (or resumed from) before it, 0 when no state was saved yet.
    """

    def __init__(self, message: str, iteration: int, last_good: int) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.last_good = last_good


def trainer_state(tr: Trainer) -> dict:
    """Everything of ``tr`` that changes while training: weights, Adam moments, schedules, the RNG.

    Reading states consumes no randomness, so saving one leaves the run's numbers unchanged.
    """
    return {
        "models": {k: m.state_dict() for k, m in tr.models.items()},
        "optims": {k: o.state_dict() for k, o in tr.optims.items()},
        "scheds": {k: s.state_dict() for k, s in tr.scheds.items()},
        "generator": tr.generator.get_state(),
    }


def load_trainer_state(tr: Trainer, state: dict) -> None:
    """Put ``trainer_state`` output (loaded on the CPU) back into ``tr``, built by ``make_trainer`` as before."""
    for k, m in tr.models.items():
        m.load_state_dict(state["models"][k])  # copies into the existing (channels-last) parameters
    for k, o in tr.optims.items():
        o.load_state_dict(state["optims"][k])
    for k, s in tr.scheds.items():
        s.load_state_dict(state["scheds"][k])
    tr.generator.set_state(state["generator"])  # a CPU ByteTensor, whatever the generator's device


# How a bad value of each curve quantity reads in the error: revision_l2 is computed from the Langevin
# samples x̂, so it is non-finite exactly when x̂ is (or overflows).
QUANTITY = {"revision_l2": "revision_l2 (the Langevin samples x̂)"}


def _checked(pending: list[tuple[int, int, torch.Tensor]], keys: list[str], max_gap: float | None,
             last_good: int) -> list[float]:
    """Host values of the last pending row, after checking every pending row; raise at the first bad one.

    ``pending`` holds (iteration, epoch, stacked stats) of iterations not yet checked: one host
    sync for all of them, not one per iteration.
    """
    rows = torch.stack([p[2] for p in pending]).tolist()
    for (it, epoch, _), values in zip(pending, rows):
        stats = dict(zip(keys, values))
        bad = [QUANTITY.get(k, k) for k, v in stats.items() if not math.isfinite(v)]
        what = f"non-finite {', '.join(bad)}" if bad else None
        if what is None and max_gap is not None and abs(stats.get("energy_gap", 0.0)) > max_gap:
            what = f"|energy_gap| = {abs(stats['energy_gap']):.4g} above max_energy_gap = {max_gap:.4g}"
        if what is not None:
            raise DivergenceError(f"training diverged: {what} at iteration {it} (epoch {epoch})", it, last_good)
    pending.clear()
    return rows[-1]


def train(
    method: str,
    tr: Trainer,
    x_train: torch.Tensor,
    cfg: dict,
    z_dim: int,
    start_iteration: int = 0,
    curves: list[dict[str, float]] | None = None,
    on_checkpoint: Callable[[int, list[dict[str, float]]], None] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train for ``cfg['epochs']`` epochs over ``x_train`` (N×C×H×W in [−1, 1], already on the device).

    Minibatches are taken in dataset order every epoch, as in the official code (its shuffle
    permutation is built but unused); the remainder that does not fill a batch is dropped.
    Returns one row of curve values every ``log_every`` iterations.

    Resuming: ``start_iteration`` iterations (and the ``curves`` rows logged in them) are already
    done, possibly mid-epoch; ``tr`` must hold the state saved after them. ``on_checkpoint(k, rows)``
    is called after iteration k every ``cfg['checkpoint_every']`` iterations and after the last one,
    once every quantity up to k passed the divergence guard (so a saved state is always a good one)
    and after the epoch's schedule step when k ends an epoch. Every iteration's losses, energy gap
    and Langevin revision are checked for NaN/Inf and |energy gap| > ``cfg['max_energy_gap']``;
    the first bad one raises ``DivergenceError`` (nothing after it is saved).
    """
    step_fn = STEPS[method]
    bs = cfg["batch_size"]
    n_batches = x_train.shape[0] // bs
    if n_batches == 0:
        raise ValueError(f"batch_size {bs} is larger than the training set ({x_train.shape[0]} images)")
    total = cfg["epochs"] * n_batches
    every = cfg["checkpoint_every"] if on_checkpoint is not None else None
    max_gap = cfg.get("max_energy_gap")  # the VAE baseline has no energy gap
    curves, last_good = list(curves or []), start_iteration
    pending: list[tuple[int, int, torch.Tensor]] = []
    for m in tr.models.values():
        m.train()
    with tqdm(total=total, initial=start_iteration, desc=f"train {method}", disable=not progress, unit="it",
              dynamic_ncols=True) as bar:
        for it in range(start_iteration, total):
            epoch, b = divmod(it, n_batches)
            stats = step_fn(tr, x_train[b * bs:(b + 1) * bs], cfg, z_dim)
            pending.append((it + 1, epoch, torch.stack(list(stats.values()))))
            log_now = (it + 1) % cfg["log_every"] == 0 or it + 1 == total
            save_now = every is not None and ((it + 1) % every == 0 or it + 1 == total)
            if log_now or save_now:
                values = _checked(pending, list(stats), max_gap, last_good)
            if log_now:
                lr_key = "vae" if "vae" in tr.optims else next(iter(tr.optims))  # the VAE's when there is one
                row = {"step": it + 1, "epoch": epoch, f"lr_{lr_key}": tr.optims[lr_key].param_groups[0]["lr"]}
                row.update(dict(zip(stats.keys(), values)))
                curves.append(row)
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_ebm", "loss_vae", "loss_gen") if k in row})
            bar.update(1)
            if b == n_batches - 1:  # the epoch's schedule step comes before its state is saved
                for s in tr.scheds.values():
                    s.step()
                if on_epoch_end is not None:
                    on_epoch_end(epoch)
            if save_now:
                on_checkpoint(it + 1, curves)
                last_good = it + 1
    return curves
