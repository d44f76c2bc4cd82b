"""The official ``mnist`` nets (the official README's Fashion-MNIST configuration, 28×28 grey images).

The official ``main.py`` with ``net_type mnist`` builds, from ``model/modules.py``:

- descriptor f_θ (``descriptor_type mnist``): conv 5×5/2 → w, conv 3×3/2 → 2w, conv 3×3/1 → 4w
  (leaky ReLU 0.2 each), then a 7×7 VALID conv to 100 channels (no activation); the energy of an
  image is the **sum** of the 100 outputs (``tf.gradients`` and the optimiser differentiate the sum
  of a non-scalar tensor);
- encoder q_φ(z|x) (``encoder_type mnist_web``): conv 4×4/2 → w, 4×4/2 → w, 4×4/1 → w, each leaky
  ReLU 0.2 then ``tf.nn.dropout(·, 0.8)``, **in every run that evaluates the encoder** (there is no
  training switch); dense heads μ and 0.5·dense = log σ over the NHWC-flattened 7×7×w map;
- generator g_α(z) (``generator_type mnist2``): deconv 4×4 VALID → 4w (4×4), 3×3/2 SAME → 2w (7×7),
  3×3/2 SAME → w (14×14), each BatchNorm (batch statistics, β only, ε 1e-3) + **ReLU**, then
  3×3/2 SAME → channels (28×28), tanh.

w = 64 in the official code (params.yaml ``nets.*_width``). TF pads 'SAME' asymmetrically (the extra
pixel at the bottom/right) in five of these layers: descriptor conv1 (1 | 2) and conv2 (0 | 1),
encoder conv3 (1 | 2), generator deconv 7→14 and 14→28 (0 | 1); ``Conv2dSame`` and
``ConvTranspose2dSame`` reproduce them exactly. Initialisation is ``pipeline.nets.init_official``.

Dropout (``TFDropout``): TF draws u ~ U[0, 1) per element (float32) and outputs
``where(u >= float32(0.2), x * float32(1.25), 0)`` (the rule read from the official op graph). Our
draws come from the caller's ``torch.Generator`` (the trainer's, or an experiment's), so a run is
deterministic given its seed; the parity check injects the official code's recorded draws instead.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.nets import LRELU, BatchNormNoScale, ConvTranspose2dSame

SIZE = 28          # the generator's shapes (4 → 7 → 14 → 28) are fixed in the official code
FC_CHANNELS = 100  # the descriptor's last conv: 100 outputs per image, summed into the energy
KEEP_PROB = 0.8
# The graph's constants (manifest ``encoder_dropout``): keep where u >= float32(0.2), times float32(1.25).
DROP_THRESHOLD = float(np.float32(1.0 - KEEP_PROB))  # 0.20000000298023224
DROP_SCALE = float(np.float32(1.0 / KEEP_PROB))      # 1.25, exact


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of one spatial dimension: out = ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """TF ``conv2d(padding='SAME')``: PyTorch's symmetric ``padding`` where TF's is symmetric, else an
    explicit ``F.pad`` with TF's (top/left, bottom/right) split and an unpadded convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (th, bh), (tw, bw) = (tf_same_pads(x.shape[-2 + d], self.kernel_size[d], self.stride[d]) for d in range(2))
        if th == bh and tw == bw:
            return F.conv2d(x, self.weight, self.bias, self.stride, (th, tw))
        return F.conv2d(F.pad(x, (tw, bw, th, bh)), self.weight, self.bias, self.stride, 0)


class SumChannels(nn.Module):
    """The descriptor's energy: the sum of its last conv's outputs per image (N×100×1×1 → N)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(dim=1)


def tf_dropout(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """TF's dropout for the draws ``u`` (same shape as ``x``): keep where u ≥ float32(0.2), kept × 1.25.

    The gradient passes through the kept elements only, times 1.25, as in TF.
    """
    return torch.where(u >= DROP_THRESHOLD, x * DROP_SCALE, torch.zeros((), dtype=x.dtype, device=x.device))


class TFDropout(nn.Module):
    """``tf.nn.dropout(x, keep_prob=0.8)``, applied at all times (the official encoder has no eval mode).

    ``u`` (the draws, NCHW like ``x``) is drawn from ``generator`` as float32 U[0, 1) unless given.
    """

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                u: torch.Tensor | None = None) -> torch.Tensor:
        if u is None:
            if generator is None:
                raise ValueError("the official mnist encoder applies dropout in every call (training, sampling, "
                                 "reconstruction): pass the run's torch.Generator (encoder(x, generator=gen)) "
                                 "or the draws (dropout_u=...)")
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        elif tuple(u.shape) != tuple(x.shape):
            raise ValueError(f"dropout draws of shape {tuple(u.shape)} for an activation of shape {tuple(x.shape)}")
        return tf_dropout(x, u)


class MnistEncoder(nn.Module):
    """q_φ(z|x): three convolutions, each leaky ReLU then dropout; dense heads for μ and (0.5×) log σ."""

    def __init__(self, channels: int, width: int, z_dim: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            Conv2dSame(channels, w, 4, 2), nn.LeakyReLU(LRELU), TFDropout(),
            Conv2dSame(w, w, 4, 2), nn.LeakyReLU(LRELU), TFDropout(),
            Conv2dSame(w, w, 4, 1), nn.LeakyReLU(LRELU), TFDropout(),
            nn.Flatten(),
        )
        flat = w * (SIZE // 4) ** 2
        self.mean = nn.Linear(flat, z_dim)
        self.logstd = nn.Linear(flat, z_dim)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                dropout_u: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ) of ``x``; the three dropouts draw from ``generator``, or use ``dropout_u`` (three
        tensors, NCHW like the activations they mask: the parity check's recorded draws)."""
        if dropout_u is not None and len(dropout_u) != 3:
            raise ValueError(f"the mnist encoder has 3 dropouts; got {len(dropout_u)} sets of draws")
        k = 0
        h = x
        # The layers are called one by one (not ``self.body(x)``) to hand each dropout its draws;
        # forward hooks on them still fire.
        for layer in self.body:
            if isinstance(layer, TFDropout):
                h = layer(h, generator, None if dropout_u is None else dropout_u[k])
                k += 1
            else:
                h = layer(h)
        return self.mean(h), 0.5 * self.logstd(h)


def build_ebm(channels: int, size: int, width: int) -> nn.Sequential:
    """Descriptor f_θ(x) → one scalar per image (shape N): the sum of the 100-channel 7×7 VALID conv."""
    check_size(size)
    w = width
    return nn.Sequential(
        Conv2dSame(channels, w, 5, 2), nn.LeakyReLU(LRELU),
        Conv2dSame(w, 2 * w, 3, 2), nn.LeakyReLU(LRELU),
        Conv2dSame(2 * w, 4 * w, 3, 1), nn.LeakyReLU(LRELU),
        nn.Conv2d(4 * w, FC_CHANNELS, size // 4, 1, 0),  # 'fc': a VALID conv over the whole 7×7 map
        SumChannels(),
    )


def build_encoder(channels: int, size: int, width: int, z_dim: int) -> MnistEncoder:
    """Encoder q_φ(z|x) returning (mean, log-std), with the official dropout in every call."""
    check_size(size)
    return MnistEncoder(channels, width, z_dim)


def build_decoder(channels: int, size: int, width: int, z_dim: int) -> nn.Sequential:
    """Generator g_α(z): z (N×z_dim) → image N×C×28×28 in [−1, 1]."""
    check_size(size)
    w = width
    return nn.Sequential(
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.ConvTranspose2d(z_dim, 4 * w, 4, 1, 0), BatchNormNoScale(4 * w), nn.ReLU(),   # 1 → 4 (VALID)
        nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1), BatchNormNoScale(2 * w), nn.ReLU(),   # 4 → 7: TF pads 1 | 1
        ConvTranspose2dSame(2 * w, w, 3, 2), BatchNormNoScale(w), nn.ReLU(),             # 7 → 14: TF pads 0 | 1
        ConvTranspose2dSame(w, channels, 3, 2), nn.Tanh(),                               # 14 → 28: TF pads 0 | 1
    )


def check_size(size: int) -> None:
    """The official mnist nets have fixed shapes: refuse any image side but 28."""
    if size != SIZE:
        raise ValueError(f"nets.type mnist is the official 28×28 architecture (its generator's shapes 4 → 7 → 14 → 28 "
                         f"are fixed); the images here are {size}×{size}: use nets.type cifar for them")
