"""Shared test setup: run from the repository root with the package importable."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture
def checksums(tmp_path, monkeypatch):
    """Register fixture files' own MD5s through the test-only override."""
    table_path = tmp_path / "checksums.json"
    table: dict[str, str] = {}

    def register(*paths: Path) -> None:
        table.update({p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in paths})
        table_path.write_text(json.dumps(table))

    monkeypatch.setenv("PIPELINE_TEST_CHECKSUMS", str(table_path))
    return register


os.environ.setdefault("PIPELINE_PROGRESS", "0")
