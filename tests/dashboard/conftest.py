"""Fixtures for the AppTest dashboard tests: an empty workspace and the shared populated one."""
from __future__ import annotations

import pytest

from tests.dashboard.populate import shared_workspace


@pytest.fixture(scope="session")
def populated(tmp_path_factory) -> dict:
    return shared_workspace(tmp_path_factory)


@pytest.fixture()
def empty_workspace(tmp_path) -> str:
    from core.workspace import Workspace

    return str(Workspace(tmp_path / "empty").root)
