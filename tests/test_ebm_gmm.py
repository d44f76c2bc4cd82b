"""An EBM learned by the paper's contrastive update with Langevin revision, on a 2-D Gaussian mixture.

The learned density p(x) ∝ exp(f(x))·N(x; 0, σ²I), normalised on a grid, must move measurably
toward the data: more mass near the mixture's modes and a higher log-likelihood of held-out data.
"""

import math

import torch
import torch.nn as nn

from pipeline.langevin import revise

MODES = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])
SIGMA_REF = 2.0


def gmm(n, g):
    idx = torch.randint(0, 4, (n,), generator=g)
    return MODES[idx] + 0.3 * torch.randn(n, 2, generator=g)


def grid_density(f, lim=5.0, n=101):
    xs = torch.linspace(-lim, lim, n)
    pts = torch.cartesian_prod(xs, xs)
    with torch.no_grad():
        logp = f(pts) - pts.pow(2).sum(1) / (2 * SIGMA_REF**2)
    cell = (xs[1] - xs[0]) ** 2
    logz = torch.logsumexp(logp, 0) + math.log(cell)
    return pts, logp - logz, cell


def log_likelihood(f, x):
    """Mean log-density of x under the grid-normalised model (nearest grid cell)."""
    pts, logp, _ = grid_density(f)
    idx = torch.cdist(x, pts).argmin(1)
    return logp[idx].mean().item()


def mass_near_modes(f, radius=0.75):
    pts, logp, cell = grid_density(f)
    near = torch.cdist(pts, MODES).min(1).values < radius
    return (logp.exp()[near] * cell).sum().item()


def test_ebm_density_moves_toward_mixture():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1), nn.Flatten(0))
    held_out = gmm(2000, g)
    ll0, mass0 = log_likelihood(f, held_out), mass_near_modes(f)
    opt = torch.optim.Adam(f.parameters(), lr=3e-3, betas=(0.5, 0.999))
    for _ in range(300):
        x_data = gmm(256, g)
        x0 = SIGMA_REF * torch.randn(256, 2, generator=g)  # proposals from the reference distribution
        x_hat = revise(f, x0, steps=40, step_size=0.15, ref_sigma=SIGMA_REF, noise=True, generator=g)
        loss = f(x_hat).mean() - f(x_data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ll1, mass1 = log_likelihood(f, held_out), mass_near_modes(f)
    # Before training the model is the reference N(0, 2²I): ~16% of its mass lies near the modes.
    print(f"mass near modes {mass0:.3f} -> {mass1:.3f}, held-out log-lik {ll0:.3f} -> {ll1:.3f}")
    assert mass1 > mass0 + 0.2, (mass0, mass1)
    assert ll1 > ll0 + 0.5, (ll0, ll1)
