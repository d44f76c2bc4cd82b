"""Shared test setup: run from the repository root with the package importable."""

from __future__ import annotations

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


os.environ.setdefault("PIPELINE_PROGRESS", "0")
