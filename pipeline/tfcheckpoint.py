"""A small pure-Python reader of TensorFlow V2 checkpoints (``X.index`` + ``X.data-00000-of-00001``).

Why not TensorFlow: it is a multi-hundred-MB dependency (see README) for reading one documented
file format. The ``.index`` file is a LevelDB SSTable whose keys are tensor names and whose values
are serialized ``tensorflow.BundleEntryProto`` messages; the data file holds raw little-endian
C-order bytes at ``offset``/``size``. Every tensor's masked CRC32C is verified (numpy CRC32C below).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
# tensorflow DataType enum → numpy dtype (little-endian); only what a CoopVAEBM checkpoint can hold
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "<u1", 6: "<i1", 9: "<i8", 10: "?", 19: "<f2"}


class CheckpointError(ValueError):
    """The checkpoint files are malformed, unsupported or corrupt."""


# ---- CRC32C (Castagnoli), vectorised over chunks with numpy -------------------------------------

def _table() -> np.ndarray:
    poly = 0x82F63B78
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(poly), t >> 1).astype(np.uint32)
    return t


_T = _table()
_CHUNK = 4096


def _raw_serial(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = int(_T[(crc ^ b) & 0xFF]) ^ (crc >> 8)
    return crc


def _shift_tables(n: int) -> list[np.ndarray]:
    """Tables of the linear map "raw CRC state followed by n zero bytes", one per state byte."""
    out = []
    for k in range(4):
        col = np.zeros(256, dtype=np.uint32)
        for b in range(8):
            col[1 << b] = _raw_zeros(1 << (8 * k + b), n)
        for v in range(1, 256):  # linear over GF(2): combine the single-bit images
            low = v & -v
            col[v] = col[low] ^ col[v ^ low] if v != low else col[v]
        out.append(col)
    return out


def _raw_zeros(state: int, n: int) -> int:
    s = np.array([state], dtype=np.uint32)
    for _ in range(n):
        s = _T[s & 0xFF] ^ (s >> 8)
    return int(s[0])


_SHIFT: list[np.ndarray] | None = None


def crc32c(data: bytes | memoryview) -> int:
    """Standard CRC32C of ``data``.

    Why chunks: a byte-at-a-time Python loop takes minutes for 86 MB. The raw CRC (init 0, no final
    xor) is linear and unaffected by leading zero bytes, so the data are zero-padded at the front to
    whole 4 KiB chunks, all chunks are run in parallel (numpy, one byte column at a time), and the
    chunk CRCs are combined with the "append 4096 zero bytes" map.
    """
    global _SHIFT
    buf = np.frombuffer(data, dtype=np.uint8)
    n = buf.size
    init = 0xFFFFFFFF
    if n < _CHUNK:
        return _raw_serial(bytes(buf), init) ^ 0xFFFFFFFF
    if _SHIFT is None:
        _SHIFT = _shift_tables(_CHUNK)
    pad = (-n) % _CHUNK
    arr = np.concatenate([np.zeros(pad, np.uint8), buf]).reshape(-1, _CHUNK)
    cols = np.ascontiguousarray(arr.T).astype(np.uint32)
    s = np.zeros(arr.shape[0], dtype=np.uint32)
    for j in range(_CHUNK):
        s = _T[(s ^ cols[j]) & 0xFF] ^ (s >> 8)
    t0, t1, t2, t3 = _SHIFT
    crc = 0
    for v in s.tolist():
        crc = int(t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24]) ^ v
    # the standard init 0xFFFFFFFF acts on the real (unpadded) data only: its effect is the raw CRC
    # of the init state pushed through n bytes, computed by chunk shifts plus a short serial tail
    st = init
    for _ in range(n // _CHUNK):
        st = int(t0[st & 0xFF] ^ t1[(st >> 8) & 0xFF] ^ t2[(st >> 16) & 0xFF] ^ t3[st >> 24])
    st = _raw_zeros(st, n % _CHUNK) if n % _CHUNK else st
    return (crc ^ st) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """LevelDB/TF masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8 mod 2^32."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---- protobuf / LevelDB primitives --------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message; varints/fixed as ints, length-delimited as bytes."""
    pos, out = 0, []
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = _varint(buf, pos)
        elif wire == 1:
            v, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            ln, pos = _varint(buf, pos)
            v, pos = bytes(buf[pos:pos + ln]), pos + ln
        elif wire == 5:
            v, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        out.append((field, v))
    return out


def _block(index: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    if index[offset + size] != 0:
        raise CheckpointError("compressed (snappy) index blocks are not supported")
    stored = struct.unpack_from("<I", index, offset + size + 1)[0]
    if mask(crc32c(index[offset:offset + size + 1])) != stored:
        raise CheckpointError(f"index block at {offset}: CRC32C mismatch (corrupt .index file)")
    blk = index[offset:offset + size]
    n_restarts = struct.unpack_from("<I", blk, len(blk) - 4)[0]
    end = len(blk) - 4 - 4 * n_restarts
    pos, key, out = 0, b"", []
    while pos < end:
        shared, pos = _varint(blk, pos)
        unshared, pos = _varint(blk, pos)
        vlen, pos = _varint(blk, pos)
        key = key[:shared] + blk[pos:pos + unshared]
        pos += unshared
        out.append((key, blk[pos:pos + vlen]))
        pos += vlen
    return out


@dataclass(frozen=True)
class Entry:
    """One tensor's BundleEntryProto."""
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c_masked: int


def _entry(value: bytes) -> Entry:
    f = dict.fromkeys(range(1, 8), 0)
    shape: tuple[int, ...] = ()
    for num, v in _fields(value):
        if num == 2:
            shape = tuple(dict(_fields(d)).get(1, 0) for n, d in _fields(v) if n == 2)
        elif num == 7:
            raise CheckpointError("sliced (partitioned) variables are not supported")
        else:
            f[num] = v
    return Entry(f[1], shape, f[3], f[4], f[5], f[6])


def read_index(index_path: Path) -> dict[str, Entry]:
    """Tensor name → entry, from a V2 checkpoint's ``.index`` file."""
    index = Path(index_path).read_bytes()
    if len(index) < 48 or struct.unpack_from("<Q", index, len(index) - 8)[0] != MAGIC:
        raise CheckpointError(f"{index_path} is not a TensorFlow V2 checkpoint index (no LevelDB table magic)")
    footer = index[-48:]
    _, pos = _varint(footer, 0)
    _, pos = _varint(footer, pos)
    idx_off, pos = _varint(footer, pos)
    idx_size, pos = _varint(footer, pos)
    entries: dict[str, Entry] = {}
    for _, handle in _block(index, idx_off, idx_size):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _block(index, off, size):
            if key == b"":  # BundleHeaderProto: num_shards (1), endianness (2: 0 = little)
                header = dict(_fields(value))
                if header.get(2, 0) != 0:
                    raise CheckpointError("big-endian checkpoints are not supported")
                if header.get(1, 1) != 1:
                    raise CheckpointError(f"checkpoint has {header.get(1)} shards; only one is supported")
                continue
            entries[key.decode()] = _entry(value)
    return entries


def read_checkpoint(prefix: Path, verify: bool = True) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint ``prefix`` (``.../model.ckpt-3000``); CRC32C-checked unless ``verify=False``."""
    prefix = Path(prefix)
    entries = read_index(prefix.with_name(prefix.name + ".index"))
    data_path = prefix.with_name(prefix.name + ".data-00000-of-00001")
    data = data_path.read_bytes()
    out = {}
    for name, e in entries.items():
        if e.dtype not in DTYPES:
            raise CheckpointError(f"tensor {name}: unsupported dtype enum {e.dtype}")
        if e.offset + e.size > len(data):
            raise CheckpointError(f"tensor {name} lies beyond the end of {data_path} (truncated file?)")
        raw = memoryview(data)[e.offset:e.offset + e.size]
        if verify and mask(crc32c(raw)) != e.crc32c_masked:
            raise CheckpointError(f"tensor {name}: CRC32C mismatch in {data_path} (corrupt or truncated "
                                  f"download; fetch checkpoints.zip again)")
        arr = np.frombuffer(raw, dtype=DTYPES[e.dtype])
        if arr.size != int(np.prod(e.shape)):
            raise CheckpointError(f"tensor {name}: {e.size} bytes do not fit shape {e.shape}")
        out[name] = arr.reshape(e.shape).astype(DTYPES[e.dtype][-2:] if DTYPES[e.dtype] != "?" else bool)
    return out
