"""The arithmetic params.yaml's ``precision`` asks for, set on torch's global switches in one place.

PyTorch's defaults are not fp32 on a GPU: cuDNN runs float32 convolutions in TF32
(``torch.backends.cudnn.allow_tf32`` is True by default), about 10 mantissa bits instead of 23. So
``fp32`` must switch TF32 off explicitly, for convolutions and matmuls alike:

- ``fp32``: TF32 off for cuDNN convolutions and cuBLAS matmuls, float32 matmul precision
  ``highest``: the official numerics (the TF1 code ran fp32 on GPUs without TF32).
- ``tf32``: TF32 on for both (``high``), an explicit speed switch for Ampere and later GPUs.
- ``bf16``: the nets' matmuls and convolutions under bf16 autocast (``pipeline.teaching.autocast``);
  what stays float32 (images, Langevin updates, losses, optimiser) runs with TF32 off, as ``fp32``.

On a CPU these switches change nothing for ``fp32`` and ``bf16`` (CPU float32 is IEEE either way).
"""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def apply_precision(precision: str) -> dict[str, object]:
    """Set torch's TF32 switches for ``precision`` (one of ``PRECISIONS``); return the settings now in force."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    # after the two flags: 'highest' also keeps cuBLAS (and oneDNN) matmuls at full float32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    return settings(precision)


def settings(precision: str | None = None) -> dict[str, object]:
    """The switches in force (what the train and sample logs print), read back from torch."""
    out: dict[str, object] = {} if precision is None else {"precision": precision}
    out.update({
        "autocast": "bf16" if precision == "bf16" else "off",
        "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    })
    return out


def describe(s: dict[str, object]) -> str:
    """One log line: ``precision fp32: autocast off, cudnn.allow_tf32 False, ...``."""
    head = f"precision {s['precision']}: " if "precision" in s else ""
    return head + ", ".join(f"{k} {v}" for k, v in s.items() if k != "precision")
