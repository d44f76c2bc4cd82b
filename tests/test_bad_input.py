"""Bad input and a hostile filesystem: a prepared file of the wrong dtype or shape, an unwritable output
directory, a disk that fills. Each must exit non-zero with one paragraph naming the file and the fix,
and leave no output (nor temporary file) behind.

The filesystem cases run the real CLI in a subprocess: a read-only or tiny tmpfs mounted in a private
mount namespace (``unshare``), and a file-size limit (RLIMIT_FSIZE), which needs no privileges at all.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_resume import TRAIN, env, write_params

from pipeline import paths
from pipeline.atomic import write_npz

PREPARE = [sys.executable, "-m", "pipeline", "prepare", "--dataset", "digits", "--params", "params.yaml"]


def files_under(root: Path) -> list[str]:
    """Every file below ``root`` except the inputs a test put there, hidden temporaries included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name not in ("params.yaml", "stderr.txt") and "logs" not in p.parts)


def run(cmd: list[str], root: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=root, env=env(), text=True, capture_output=True, timeout=600, **kw)


def assert_one_paragraph_naming(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in:\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("bad, found", [
    (np.zeros((4, 16, 16, 1), np.float32), "float32 (4, 16, 16, 1)"),
    (np.zeros((4, 16, 16), np.uint8), "uint8 (4, 16, 16)"),
])
def test_prepared_file_of_wrong_dtype_or_shape(tmp_path, bad, found):
    write_params(tmp_path)
    good = np.zeros((4, 16, 16, 1), np.uint8)
    labels = np.zeros(4, np.int64)
    write_npz(tmp_path / paths.prepared("digits"), x_train=bad, y_train=labels, x_test=good, y_test=labels)
    before = files_under(tmp_path)
    proc = run([sys.executable, "-m", "pipeline", *TRAIN], tmp_path)
    assert_one_paragraph_naming(proc, "data/prepared/digits.npz", "'x_train' must be uint8", found, "prepare")
    assert files_under(tmp_path) == before


def test_output_directory_that_is_a_file(tmp_path):
    write_params(tmp_path)
    (tmp_path / "data").write_text("a file where the data directory should be\n")
    proc = run(PREPARE, tmp_path)
    assert_one_paragraph_naming(proc, "could not write data/prepared:", "Not a directory",
                                "Make data a writable directory")
    assert files_under(tmp_path) == ["data"]


def test_file_size_limit_while_writing(tmp_path):
    """A disk that fills, as a write() sees it: the prepared digits (~130 KB) pass a 64 KiB limit."""
    write_params(tmp_path)
    limit = 64 * 1024

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run(PREPARE, tmp_path, preexec_fn=cap)
    assert_one_paragraph_naming(proc, "could not write data/prepared/digits.npz", "File too large", "df -h data/prepared")
    assert files_under(tmp_path) == []
    assert run(PREPARE, tmp_path).returncode == 0  # the same command without the limit succeeds
    assert files_under(tmp_path) == ["data/prepared/digits.json", "data/prepared/digits.npz"]


def in_mount_namespace(root: Path, mount_options: str) -> subprocess.CompletedProcess:
    """Run the prepare stage with a tmpfs mounted on data/prepared in a private mount namespace (the mount
    vanishes with the process), then print what the stage left in it as ``LEFT:[...]``."""
    if not shutil.which("unshare"):
        pytest.skip("needs util-linux unshare for a private tmpfs")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user/mount namespaces here: {probe.stderr.decode().strip()}")
    (root / "data/prepared").mkdir(parents=True)
    script = (f'mount -t tmpfs -o {mount_options} tmpfs data/prepared || exit 99; "$@"; rc=$?; '
              'echo "LEFT:[$(ls -A data/prepared)]" >&2; exit $rc')
    proc = run(["unshare", "-rm", "sh", "-c", script, "sh", *PREPARE], root)
    assert proc.returncode != 99, f"mount failed: {proc.stderr}"
    return proc


def test_read_only_output_directory(tmp_path):
    write_params(tmp_path)
    proc = in_mount_namespace(tmp_path, "ro,size=1m")
    assert_one_paragraph_naming(proc, "could not write data/prepared/digits.npz", "Read-only file system",
                                "writable directory", "LEFT:[]")


def test_disk_that_fills(tmp_path):
    """A 64 KiB tmpfs on data/prepared: the npz (~130 KB) does not fit; nothing may be left in it."""
    write_params(tmp_path)
    proc = in_mount_namespace(tmp_path, "size=64k")
    assert_one_paragraph_naming(proc, "could not write data/prepared/digits.npz", "No space left on device",
                                "df -h data/prepared", "LEFT:[]")
