"""The documentation stays true to the repository: README.md and docs/*.md.

Every relative link resolves (the file exists; an ``#anchor`` names a heading of the target, by
GitHub's slug rules), every ``python -m pipeline <sub-command>`` they write is one the CLI offers
(``python -m pipeline --help``, parsed once), README.md stays short enough to read in five minutes,
and every docs/ file is reachable from README.md. Fast: text only, one subprocess.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# Inline links and images: [text](target) / ![alt](target), an optional "title" after the target.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Reference definitions: [label]: target
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
PIPELINE_CALL = re.compile(r"python -m pipeline ([a-z][a-z0-9-]*)")


def doc_files() -> list[Path]:
    """README.md and every markdown file under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def without_code(text: str) -> str:
    """Text with fenced blocks removed and code spans reduced to their content's length in x's:
    a `[a](b)` inside code is not a link, and headings keep their line positions."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: "x" * len(m.group(2)), text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-cased, punctuation dropped
    (letters, digits, '_', '-' and spaces kept), spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = text.replace("`", "")  # code spans show their content
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags render nothing
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "_- ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(without_code_fences(path.read_text(encoding="utf-8"))):
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def without_code_fences(text: str) -> str:
    """Text with fenced code blocks blanked (a '# comment' in a bash block is no heading)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition in a file."""
    text = without_code(path.read_text(encoding="utf-8"))
    found = []
    for pattern in (INLINE_LINK, REF_DEF):
        for m in pattern.finditer(text):
            found.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return sorted(found)


def broken_links(path: Path) -> list[str]:
    """'file:line: target (why)' for every relative link of `path` that does not resolve."""
    problems = []
    for line, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {target}"
        if not dest.exists():
            problems.append(f"{where} (no such file: {dest})")
        elif anchor:
            if dest.suffix != ".md" or dest.is_dir():
                problems.append(f"{where} (an anchor into a file that is not markdown)")
            elif unquote(anchor) not in anchors(dest):
                problems.append(f"{where} (no heading with anchor #{anchor} in {dest.name})")
    return problems


@pytest.fixture(scope="module")
def sub_commands() -> set[str]:
    """The sub-commands `python -m pipeline --help` lists under 'positional arguments'."""
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=ROOT, text=True,
                         capture_output=True, check=True, timeout=120).stdout
    section = out.split("positional arguments:", 1)[1].split("options:", 1)[0]
    # Sub-commands sit at an indent of 4; their wrapped help lines are indented further.
    names = set(re.findall(r"^ {4}([a-z][a-z0-9-]*)", section, re.M))
    assert {"prepare", "train", "parity", "bench"} <= names, out
    return names


def test_every_relative_link_resolves():
    problems = [p for f in doc_files() for p in broken_links(f)]
    assert not problems, "broken links in the documentation:\n" + "\n".join(problems)


def test_every_documented_pipeline_command_exists(sub_commands):
    unknown = []
    for f in doc_files():
        text = f.read_text(encoding="utf-8")
        for m in PIPELINE_CALL.finditer(text):
            if m.group(1) not in sub_commands:
                line = text.count("\n", 0, m.start()) + 1
                unknown.append(f"{f.relative_to(ROOT)}:{line}: python -m pipeline {m.group(1)}")
    assert not unknown, ("sub-commands not in `python -m pipeline --help` "
                         f"({sorted(sub_commands)}):\n" + "\n".join(unknown))


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}: move detail to docs/)"


def test_every_docs_file_is_linked_from_the_readme():
    targets = {(ROOT / unquote(t.partition("#")[0])).resolve() for _, t in links(ROOT / "README.md")}
    orphans = [str(f.relative_to(ROOT)) for f in doc_files()[1:] if f.resolve() not in targets]
    assert not orphans, f"docs not linked from README.md ('Read more'): {orphans}"


def test_the_checker_catches_a_broken_link_and_a_missing_anchor(tmp_path):
    # The checks above pass only if they can fail: a page with a good link, a dead file link, a dead
    # anchor, and a link inside code (not a link).
    (tmp_path / "other.md").write_text("# Other page\n\n## CI's gate: `check` ±0.5\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#cis-gate-check-05) [self](#page) [web](https://example.org)\n"
                    "[gone](missing.md) and [bad anchor](other.md#nope)\n"
                    "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n")
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "no such file" in problems[0]
    assert "#nope" in problems[1] and "no heading" in problems[1]
