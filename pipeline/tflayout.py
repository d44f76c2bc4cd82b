"""The official code's TF variables ↔ our modules' parameters: names and layouts, one table.

The official CoopVAEBM graph (TF1, NHWC) names its trainable variables ``des/…`` (descriptor),
``VAE_encoder/…`` and ``VAE_generator/…``. Their layouts differ from PyTorch's:

- conv kernels are H×W×in×out, conv2d_transpose kernels H×W×out×in: both become PyTorch's
  [out, in, H, W] / [in, out, H, W] by the same ``transpose(3, 2, 0, 1)`` (no flip);
- dense kernels are in×out (PyTorch: out×in), and the encoder flattens its last feature map in
  NHWC order ((h·W + w)·C + c) where ``nn.Flatten`` on NCHW uses (c·H + h)·W + w.

There is one table per official net type (``TABLES``: ``cifar``, 37 variables; ``mnist``, 29: the
descriptor's conv1–3 and fc, the encoder's conv1–3 and two dense heads, the generator's convt1–3
with their BatchNorm β and convt5). ``to_modules`` maps a {TF name: array} dict into our three nets
(the table of their ``.net_type``); ``to_tf`` maps one of our tensors (a weight, or its gradient) back
to TF layout. The parity check (``pipeline.parity``) uses both, and so can a converter of the
authors' TF checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn


@dataclass(frozen=True)
class Entry:
    tf: str        # TF variable name without ":0"
    module: str    # "ebm" | "encoder" | "decoder"
    param: str     # key in that module's state_dict
    kind: str      # "conv" | "dense" | "vector"


def _cifar_table() -> list[Entry]:
    rows: list[Entry] = []
    # Generator: Sequential(Unflatten, convT, BN, act, convT, BN, act, convT, BN, act, convT, act, convT, tanh)
    for i, (layer, bn) in enumerate([("convt2", "BatchNorm"), ("convt3", "BatchNorm_1"), ("convt4", "BatchNorm_2")]):
        idx = 1 + 3 * i
        rows += [Entry(f"VAE_generator/{layer}/w", "decoder", f"{idx}.weight", "conv"),
                 Entry(f"VAE_generator/{layer}/biases", "decoder", f"{idx}.bias", "vector"),
                 Entry(f"VAE_generator/{bn}/beta", "decoder", f"{idx + 1}.beta", "vector")]
    for layer, idx in (("convt5", 10), ("convt6", 12)):
        rows += [Entry(f"VAE_generator/{layer}/w", "decoder", f"{idx}.weight", "conv"),
                 Entry(f"VAE_generator/{layer}/biases", "decoder", f"{idx}.bias", "vector")]
    # Descriptor: Sequential(conv, act, conv, act, conv, act, conv, act, conv (fc), Flatten)
    rows += _convs("des", "ebm", "", (("conv1", 0), ("conv2", 2), ("conv3", 4), ("conv4", 6), ("fc", 8)))
    # Encoder: body = Sequential(conv, act, ×4, Flatten); dense → mean, dense_1 → log-std (×0.5 in forward)
    rows += _convs("VAE_encoder", "encoder", "body.", (("conv1", 0), ("conv2", 2), ("conv3", 4), ("conv4", 6)))
    return rows + _encoder_heads()


def _convs(scope: str, net: str, prefix: str, layers: tuple[tuple[str, int], ...]) -> list[Entry]:
    """TF ``<scope>/<layer>/kernel`` and ``/bias`` → our ``<prefix><index>.weight`` / ``.bias`` of ``net``."""
    return [e for layer, idx in layers for e in (Entry(f"{scope}/{layer}/kernel", net, f"{prefix}{idx}.weight", "conv"),
                                                Entry(f"{scope}/{layer}/bias", net, f"{prefix}{idx}.bias", "vector"))]


def _encoder_heads() -> list[Entry]:
    """The encoder's dense heads (both net types): dense → mean, dense_1 → log-std (×0.5 in forward)."""
    return [e for layer, head in (("dense", "mean"), ("dense_1", "logstd"))
            for e in (Entry(f"VAE_encoder/{layer}/kernel", "encoder", f"{head}.weight", "dense"),
                      Entry(f"VAE_encoder/{layer}/bias", "encoder", f"{head}.bias", "vector"))]


def _mnist_table() -> list[Entry]:
    rows: list[Entry] = []
    # Generator (pipeline.mnist_nets.build_decoder): Sequential(Unflatten, convT, BN, relu, convT, BN, relu,
    # convT, BN, relu, convT, tanh); TF names its last layer convt5 (there is no convt4).
    for layer, bn, idx in (("convt1", "BatchNorm", 1), ("convt2", "BatchNorm_1", 4), ("convt3", "BatchNorm_2", 7)):
        rows += [Entry(f"VAE_generator/{layer}/w", "decoder", f"{idx}.weight", "conv"),
                 Entry(f"VAE_generator/{layer}/biases", "decoder", f"{idx}.bias", "vector"),
                 Entry(f"VAE_generator/{bn}/beta", "decoder", f"{idx + 1}.beta", "vector")]
    rows += [Entry("VAE_generator/convt5/w", "decoder", "10.weight", "conv"),
             Entry("VAE_generator/convt5/biases", "decoder", "10.bias", "vector")]
    # Descriptor: Sequential(conv, act, conv, act, conv, act, conv (fc, 100 channels), SumChannels)
    rows += _convs("des", "ebm", "", (("conv1", 0), ("conv2", 2), ("conv3", 4), ("fc", 6)))
    # Encoder: body = Sequential(conv, act, dropout, ×3, Flatten); dense → mean, dense_1 → log-std
    rows += _convs("VAE_encoder", "encoder", "body.", (("conv1", 0), ("conv2", 3), ("conv3", 6)))
    return rows + _encoder_heads()


TABLES: dict[str, list[Entry]] = {"cifar": _cifar_table(), "mnist": _mnist_table()}
TABLE: list[Entry] = TABLES["cifar"]  # the type of the released CIFAR-10 checkpoint (pipeline.official)
BY_TF: dict[str, Entry] = {e.tf: e for e in TABLE}


def table(net_type: str) -> list[Entry]:
    """The name/layout table of one official net type (``cifar`` or ``mnist``)."""
    if net_type not in TABLES:
        raise ValueError(f"no TF layout table for net type {net_type!r} (known: {', '.join(TABLES)})")
    return TABLES[net_type]


def by_tf(net_type: str) -> dict[str, Entry]:
    """{TF name: entry} of one net type's table."""
    return {e.tf: e for e in table(net_type)}


def net_type_of(models: dict[str, nn.Module]) -> str:
    """The official net type ``pipeline.nets.build_models`` gave these nets (``cifar`` if untagged)."""
    kinds = {getattr(m, "net_type", "cifar") for m in models.values()}
    if len(kinds) != 1:
        raise ValueError(f"nets of several types together: {sorted(kinds)}")
    return kinds.pop()


def tf_name(name: str) -> str:
    """``des/conv1/kernel:0`` → ``des/conv1/kernel`` (the table's key)."""
    return name[:-2] if name.endswith(":0") else name


def encoder_map_shape(models: dict[str, nn.Module]) -> tuple[int, int, int]:
    """(C, H, W) of the encoder's last feature map, read off its dense head and conv widths."""
    enc = models["encoder"]
    channels = [m for m in enc.body if isinstance(m, nn.Conv2d)][-1].out_channels
    side = int(round((enc.mean.in_features // channels) ** 0.5))
    return channels, side, side


def _to_torch(entry: Entry, value: np.ndarray, fmap: tuple[int, int, int]) -> np.ndarray:
    if entry.kind == "conv":
        return value.transpose(3, 2, 0, 1)
    if entry.kind == "dense":
        c, h, w = fmap
        out = value.shape[1]
        # rows in NHWC flatten order → columns in NCHW flatten order
        return value.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w)
    return value


def to_tf(entry: Entry, value: np.ndarray, fmap: tuple[int, int, int]) -> np.ndarray:
    """One of our tensors (weight or gradient, as numpy) in the TF layout of ``entry``."""
    if entry.kind == "conv":
        return value.transpose(2, 3, 1, 0)
    if entry.kind == "dense":
        c, h, w = fmap
        out = value.shape[0]
        return value.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)
    return value


def to_modules(tf_vars: dict[str, np.ndarray], models: dict[str, nn.Module]) -> list[str]:
    """Copy every mapped TF variable into ``models`` (in place); return the TF names not in the table.

    Every parameter of every model must be covered, and every shape must agree; otherwise a
    ``ValueError`` names the parameter or variable.
    """
    fmap = encoder_map_shape(models)
    entries = by_tf(net_type_of(models))
    states = {k: m.state_dict() for k, m in models.items()}
    covered: set[tuple[str, str]] = set()
    unmapped = []
    for name, value in tf_vars.items():
        entry = entries.get(tf_name(name))
        if entry is None or entry.module not in states:
            unmapped.append(name)
            continue
        target = states[entry.module][entry.param]
        arr = np.ascontiguousarray(_to_torch(entry, np.asarray(value), fmap))
        if tuple(arr.shape) != tuple(target.shape):
            raise ValueError(f"TF variable {name} has shape {tuple(np.asarray(value).shape)}; in PyTorch layout "
                             f"{tuple(arr.shape)}, but {entry.module}.{entry.param} is {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(arr).to(target.dtype))
        covered.add((entry.module, entry.param))
    missing = [f"{k}.{p}" for k, st in states.items() for p in st if (k, p) not in covered]
    if missing:
        raise ValueError(f"no TF variable for {', '.join(missing)}")
    return unmapped
