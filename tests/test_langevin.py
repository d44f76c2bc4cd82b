import torch
import torch.nn as nn

from pipeline.langevin import langevin_step, revise


class Linear(nn.Module):
    """f(x) = Σ w·x, so ∂f/∂x = w everywhere: the step can be computed by hand."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_step_matches_hand_computation():
    ebm = Linear([0.5, 3.0])
    x = torch.tensor([[1.0, -2.0]])
    # δ = 0.1, σ = 0.5: δ²/2 = 0.005; x/σ² − w = [4 − 0.5, −8 − 3] = [3.5, −11]
    # x' = x − 0.005·[3.5, −11] = [0.9825, −1.945]
    out = langevin_step(ebm, x, step_size=0.1, ref_sigma=0.5)
    assert torch.allclose(out, torch.tensor([[0.9825, -1.945]]), atol=1e-6)


def test_step_with_noise_adds_delta_times_eps():
    ebm = Linear([0.5, 3.0])
    x = torch.tensor([[1.0, -2.0]])
    eps = torch.tensor([[2.0, -1.0]])
    out = langevin_step(ebm, x, step_size=0.1, ref_sigma=0.5, noise=eps)
    assert torch.allclose(out, torch.tensor([[0.9825 + 0.2, -1.945 - 0.1]]), atol=1e-6)


def test_revise_runs_steps_and_leaves_no_parameter_gradients():
    ebm = Linear([0.5, 3.0])
    x0 = torch.tensor([[1.0, -2.0]])
    x = x0.clone()
    for _ in range(3):
        x = langevin_step(ebm, x, 0.1, 0.5)
    out = revise(ebm, x0, steps=3, step_size=0.1, ref_sigma=0.5)
    assert torch.allclose(out, x)
    assert ebm.w.grad is None and ebm.w.requires_grad
    assert not out.requires_grad


def test_fixed_point_is_reference_mode_times_gradient():
    # With f = c·x (constant gradient c), the noiseless revision converges to x* = σ²·c.
    ebm = Linear([1.0, -2.0])
    out = revise(ebm, torch.zeros(1, 2), steps=4000, step_size=0.2, ref_sigma=1.0)
    assert torch.allclose(out, torch.tensor([[1.0, -2.0]]), atol=1e-4)


def test_noise_is_reproducible_with_generator():
    ebm = Linear([0.5, 3.0])
    x = torch.zeros(4, 2)
    a = revise(ebm, x, 5, 0.1, 0.5, noise=True, generator=torch.Generator().manual_seed(3))
    b = revise(ebm, x, 5, 0.1, 0.5, noise=True, generator=torch.Generator().manual_seed(3))
    c = revise(ebm, x, 5, 0.1, 0.5, noise=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
