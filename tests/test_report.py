"""`snakemake --report results/report.html digits`, opened in headless Chromium: after a tiny digits
run of this commit's workflow, and on the committed results (whose screenshot is
results/report-screenshot.png). The digits table must be rendered as a table, not as code."""

from __future__ import annotations

import html as htmllib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import reportmd
from test_workflows import run, tiny_copy

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Offline, no profile, no background traffic: the report is one local file.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,2200", "--virtual-time-budget=5000"]


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


def table_rows(html: str) -> list[list[str]]:
    """The text of every cell of every <tr> of a page (tags stripped, entities decoded)."""
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.S)
        rows.append([htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def assert_table_rendered(html: str, table_md: Path) -> None:
    """The coopvaebm row of the markdown table is a row of an HTML table, and not shown as code."""
    row = next(line for line in table_md.read_text().splitlines() if line.startswith("| coopvaebm |"))
    assert [c for c in reportmd.split_row(row)] in table_rows(html), "the digits table is not rendered"
    assert row not in html, "the digits table is shown as markdown text (a code block)"


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
    assert "CoopVAEBM reproduction" in html  # report/workflow.rst, rendered by the page's script
    assert_table_rendered(html, root / "results/tables/digits-ci.md")
    assert 'src="digits/coopvaebm/seed0/samples.png"' in html
    for category in ("Samples", "Training curves", "Tables", "Checks"):
        assert f">{category}<" in html, category

    shot = tmp_path / "report.png"
    proc = chromium([f"--screenshot={shot}"], report.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    # The sample grid was drawn (a missing image leaves its alt text: measured 2,768 such pixels on
    # the whole page against 74,016 with the grid).
    assert grey_pixels(shot) > 20_000, grey_pixels(shot)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install -y chromium; .ci/run does)")
def test_report_of_the_committed_results(tmp_path):
    """The report of the committed results (no run: Snakemake warns that their metadata is missing and
    adds them). `REPORT_SCREENSHOT=$PWD/results/report-screenshot.png python -m pytest -m slow
    tests/test_report.py -k committed` refreshes the committed screenshot from this page."""
    root = committed_copy(tmp_path / "repo")
    run(["snakemake", "--report", "results/report.html", "digits"], root)
    report = root / "results/report.html"
    dom = chromium(["--dump-dom"], report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert_table_rendered(dom.stdout, root / "results/tables/digits-ci.md")

    shot = tmp_path / "report.png"
    proc = chromium([f"--screenshot={shot}"], report.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert grey_pixels(shot) > 20_000, grey_pixels(shot)
    if os.environ.get("REPORT_SCREENSHOT"):  # to refresh the committed results/report-screenshot.png
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])


def test_markdown_tables_directive_renders_tables_headings_and_text(tmp_path):
    """pipeline/reportmd.py, without Snakemake: what the tables stage writes becomes HTML tables."""
    from docutils.core import publish_parts
    from docutils.utils import SystemMessage

    md = tmp_path / "t.md"
    md.write_text("## digits: `fd_digits` (lower is better)\n\n| method | fd | note |\n|---|---:|---|\n"
                  "| coopvaebm | 1.47 | a \\| b |\n| vae | — |\n\nGenerated by `python -m pipeline tables`.\n")
    reportmd.register()
    page = publish_parts(f".. markdown-tables:: {md}\n", writer="html")["html_body"]
    assert table_rows(page) == [["method", "fd", "note"], ["coopvaebm", "1.47", "a | b"], ["vae", "—", ""]]
    assert '<p class="rubric">digits: <tt class="docutils literal">fd_digits</tt>' in page \
        or '<p class="rubric">digits: <span class="docutils literal">fd_digits</span>' in page, page
    assert "<pre" not in page and "system-message" not in page, page
    assert 'class="align-right' in page  # |---:| right-aligns the column
    # A missing file stops the report with what to run (docutils halts on a severe message).
    with pytest.raises(SystemMessage, match="cannot read .*absent.md.*tables stage"):
        publish_parts(f".. markdown-tables:: {tmp_path / 'absent.md'}\n", writer="html",
                      settings_overrides={"report_level": 5})
