"""`snakemake --report results/report.html digits` after a tiny digits run, opened in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_workflows import BIN, run, tiny_copy

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Offline, no profile, no background traffic: the report is one local file.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1800", "--virtual-time-budget=5000"]


def chromium(args: list[str], url: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url], text=True,
                              capture_output=True, timeout=180)


def committed_copy(dst: Path) -> Path:
    """The repository's tracked files, committed results included (no run needed)."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], ROOT).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    return dst


def grey_pixels(png: Path) -> int:
    """Pixels with r == g == b below 200: the grey-scale digit grids; the page's own colours are tinted."""
    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2]) & (a[..., 0] < 200)).sum())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install -y chromium; .ci/run does)")
def test_report_opens_in_chromium_with_the_digits_table_and_samples(tmp_path):
    # A tiny digits run of its own: the report shows what this commit's workflow makes, whatever is committed.
    root = tiny_copy(tmp_path / "repo")
    run(["snakemake", "--cores", "2", "digits"], root)
    run(["snakemake", "--report", "results/report.html", "digits"], root)
    report = root / "results/report.html"
    assert report.stat().st_size > 100_000  # the embedded images

    dom = chromium(["--dump-dom"], report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    table = (root / "results/tables/digits-ci.md").read_text()
    coop_row = next(line for line in table.splitlines() if line.startswith("| coopvaebm |"))
    assert "CoopVAEBM reproduction" in html  # report/workflow.rst, rendered by the page's script
    assert coop_row in html, "the digits table is not on the page"
    assert 'src="digits/coopvaebm/seed0/samples.png"' in html
    for category in ("Samples", "Training curves", "Tables", "Checks"):
        assert f">{category}<" in html, category

    shot = tmp_path / "report.png"
    proc = chromium([f"--screenshot={shot}"], report.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    # The sample grid was drawn (a missing image leaves its alt text: measured 2,768 such pixels on
    # the whole page against 74,016 with the grid).
    assert grey_pixels(shot) > 20_000, grey_pixels(shot)
    if os.environ.get("REPORT_SCREENSHOT"):  # to refresh the committed results/report-screenshot.png
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])
