"""Fixtures shared by the test suites (a module may define its own `home` instead)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_analytics.paths import Home


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """An empty home with its two landing folders."""
    h = Home(tmp_path / "home")
    h.ensure_landing()
    return h
