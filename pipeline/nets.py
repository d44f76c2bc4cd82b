"""The EBM descriptor f_θ, the VAE encoder q_φ(z|x) and decoder g_α(z): official ``modules.py`` type ``cifar``.

``build_models`` builds the type params.yaml ``nets.type`` names: ``cifar`` (default, here) or
``mnist`` (the official Fashion-MNIST nets, ``pipeline.mnist_nets``). Every encoder is called as
``encoder(x, generator=gen)``: the mnist encoder draws its dropout from ``gen``; this one has none.

Layer shapes follow the official code for an image of side ``size`` (a multiple of 8) with the
channel widths scaled by ``width`` (64 = official for 32×32 CIFAR-10). Transposed convolutions pad
as TF's 'SAME' does (``ConvTranspose2dSame``). Quirks kept from the official code (README,
"Faithfulness"): leaky-ReLU slope 0.2, no normalisation in the descriptor
or encoder, generator BatchNorm always on batch statistics with a shift β but no scale γ and
ε = 1e-3, conv kernels N(0, init_std²), Glorot-uniform dense heads, zero biases.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LRELU = 0.2


class BatchNormNoScale(nn.Module):
    """TF ``batch_norm(scale=False, center=True, epsilon=1e-3)`` in training mode, always.

    The official generator normalises with the current batch's statistics at train and test time,
    so there are no running statistics to keep.
    """

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # An explicit scale of ones, not weight=None: CUDA's batch norm backward with no weight returns an
        # empty bias gradient ("invalid gradient at index 2", found by the GPU check). x·1 is exact, and the
        # CPU kernel multiplies by 1 where no weight is given, so CPU results are bit-identical.
        return F.batch_norm(x, None, None, weight=torch.ones_like(self.beta), bias=self.beta, training=True,
                            eps=self.eps)


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """TF ``conv2d_transpose(padding='SAME')`` to ``in·stride`` pixels.

    TF pads a 'SAME' convolution asymmetrically (top/left ``total // 2``, the extra pixel at the
    bottom/right), so its transpose keeps rows ``[total // 2, total // 2 + out)`` of the unpadded
    output. Where ``total`` is even that is PyTorch's symmetric ``padding``. Where it is odd (the
    3×3 stride-2 layer: top/left 0, bottom/right 1) no PyTorch ``padding``/``output_padding`` gives
    it (``padding=1, output_padding=1`` is shifted by one pixel); on the mirrored image the extra
    pixel is at the top, which PyTorch's ``output_padding`` does express, so that case runs mirrored
    (input and kernel flipped, output flipped back): exact, and as fast as the plain layer (cropping
    an unpadded output was 2.5× slower on CPU).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        s, k = self.stride, self.kernel_size
        total = [max((x.shape[-2 + d] - 1) * s[d] + k[d] - x.shape[-2 + d] * s[d], 0) for d in range(2)]
        top = [t // 2 for t in total]
        bottom = [t - t // 2 for t in total]
        if top == bottom:
            return F.conv_transpose2d(x, self.weight, self.bias, s, tuple(top))
        extra = tuple(b - t for b, t in zip(bottom, top))
        y = F.conv_transpose2d(x.flip(2, 3), self.weight.flip(2, 3), self.bias, s, tuple(bottom), output_padding=extra)
        return y.flip(2, 3)


class Encoder(nn.Module):
    """q_φ(z|x): four convolutions, then dense heads for the mean and (0.5×) the log-std."""

    def __init__(self, channels: int, size: int, width: int, z_dim: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, 1, 1), nn.LeakyReLU(LRELU),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(LRELU),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(LRELU),
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.LeakyReLU(LRELU),
            nn.Flatten(),
        )
        flat = 8 * w * (size // 8) ** 2
        self.mean = nn.Linear(flat, z_dim)
        self.logstd = nn.Linear(flat, z_dim)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                dropout_u: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-std) of ``x``. ``generator`` is unused (no random op in this encoder: it takes the
        same arguments as the mnist one, whose dropout draws from it); ``dropout_u`` must be None."""
        if dropout_u is not None:
            raise ValueError("the cifar encoder has no dropout: dropout draws were given to it")
        h = self.body(x)
        return self.mean(h), 0.5 * self.logstd(h)


def build_ebm(channels: int, size: int, width: int) -> nn.Sequential:
    """Descriptor f_θ(x) → one scalar per image (shape N)."""
    _check_size(size)
    w = width
    return nn.Sequential(
        nn.Conv2d(channels, w, 3, 1, 1), nn.LeakyReLU(LRELU),
        nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(LRELU),
        nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(LRELU),
        nn.Conv2d(4 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(LRELU),
        nn.Conv2d(4 * w, 1, size // 8, 1, 0),  # a conv over the whole remaining map
        nn.Flatten(0),
    )


def build_encoder(channels: int, size: int, width: int, z_dim: int) -> Encoder:
    """Encoder q_φ(z|x) returning (mean, log-std)."""
    _check_size(size)
    return Encoder(channels, size, width, z_dim)


def build_decoder(channels: int, size: int, width: int, z_dim: int) -> nn.Sequential:
    """Generator g_α(z): z (N×z_dim) → image N×C×size×size in [−1, 1]."""
    _check_size(size)
    w = width
    return nn.Sequential(
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.ConvTranspose2d(z_dim, 4 * w, size // 8, 1, 0), BatchNormNoScale(4 * w), nn.LeakyReLU(LRELU),
        ConvTranspose2dSame(4 * w, 2 * w, 4, 2), BatchNormNoScale(2 * w), nn.LeakyReLU(LRELU),
        ConvTranspose2dSame(2 * w, w, 4, 2), BatchNormNoScale(w), nn.LeakyReLU(LRELU),
        ConvTranspose2dSame(w, w, 3, 2), nn.LeakyReLU(LRELU),
        ConvTranspose2dSame(w, channels, 3, 1), nn.Tanh(),
    )


def bn_fed_biases(decoder: nn.Sequential) -> set[str]:
    """state_dict keys of the decoder biases that go straight into a batch norm.

    The batch norm subtracts the batch mean, so their exact gradient is 0 and what a backward pass
    returns for them is float noise (in the official code too); Adam turns that noise into steps of
    up to ±lr. Comparisons between implementations must skip them.
    """
    return {f"{i}.bias" for i, m in enumerate(decoder)
            if i + 1 < len(decoder) and isinstance(decoder[i + 1], BatchNormNoScale) and getattr(m, "bias", None)
            is not None}


def init_official(module: nn.Module, init_std: float) -> None:
    """Official initialisation: conv/deconv kernels N(0, init_std²), dense Glorot-uniform, biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, init_std)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


NET_TYPES = ("cifar", "mnist")


def net_type(nets_cfg: dict) -> str:
    """params.yaml ``nets.type`` (``cifar`` when absent, so every config written before it means the same)."""
    kind = nets_cfg.get("type", "cifar")
    if kind not in NET_TYPES:
        raise ValueError(f"nets.type {kind!r}: the official net types implemented here are {', '.join(NET_TYPES)}")
    return kind


def build_models(channels: int, size: int, nets_cfg: dict) -> dict[str, nn.Module]:
    """The three nets of one dataset config (type ``nets_cfg['type']``), initialised as in the official code.

    Each net carries its type as ``.net_type`` (what ``pipeline.tflayout`` and the parity check read).
    """
    kind = net_type(nets_cfg)
    if kind == "mnist":
        from pipeline import mnist_nets  # it imports this module's layers: loaded on use

        builders = (mnist_nets.build_ebm, mnist_nets.build_encoder, mnist_nets.build_decoder)
    else:
        builders = (build_ebm, build_encoder, build_decoder)
    models = {
        "ebm": builders[0](channels, size, nets_cfg["ebm_width"]),
        "encoder": builders[1](channels, size, nets_cfg["enc_width"], nets_cfg["z_dim"]),
        "decoder": builders[2](channels, size, nets_cfg["gen_width"], nets_cfg["z_dim"]),
    }
    for m in models.values():
        init_official(m, nets_cfg["init_std"])
        m.net_type = kind
    return models


def _check_size(size: int) -> None:
    if size % 8 or size < 8:
        raise ValueError(f"image size must be a multiple of 8 (three stride-2 stages), got {size}")
