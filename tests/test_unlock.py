"""The recovery after killing Snakemake (README "Running it", docs/workflows.md): `snakemake --unlock`, as written, on a real stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_workflows import BIN, run, tiny_copy


def locks(root: Path) -> list[Path]:
    d = root / ".snakemake" / "locks"
    return sorted(d.iterdir()) if d.is_dir() else []


@pytest.mark.slow
def test_unlock_as_documented_removes_a_stale_lock(tmp_path):
    root = tiny_copy(tmp_path)
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "PIPELINE_PROGRESS": "0"}
    # A real run, killed with SIGKILL (no cleanup) while it holds the lock: the state a user finds after
    # `kill -9`, a lost SSH session or an out-of-memory kill of the Snakemake process.
    proc = subprocess.Popen(["snakemake", "--cores", "1", "digits"], cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not locks(root) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert locks(root), "snakemake never took its lock"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert locks(root), "the killed run left no lock: nothing to recover from"

    blocked = run(["snakemake", "--cores", "1", "--rerun-incomplete", "digits"], root, check=False)
    assert blocked.returncode != 0 and "cannot be locked" in blocked.stdout + blocked.stderr

    # README "Running it" and docs/workflows.md "Crash safety": exactly this command, no --cores.
    unlocked = run(["snakemake", "--unlock"], root)
    assert "Unlocked working directory" in unlocked.stdout + unlocked.stderr
    assert locks(root) == []

    # The rerun proceeds (one cheap stage, to keep the test short).
    rerun = run(["snakemake", "--cores", "1", "--rerun-incomplete", "data/prepared/digits.npz"], root)
    assert (root / "data/prepared/digits.npz").is_file(), rerun.stderr[-2000:]
    assert locks(root) == []
