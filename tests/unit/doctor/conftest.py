from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.doctor.helpers import make_base, make_project


@pytest.fixture(scope="session")
def doctor_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_base(tmp_path_factory.mktemp("doctor") / "base")


@pytest.fixture
def new_project(doctor_base: Path, tmp_path: Path) -> Callable[..., Path]:
    """``new_project(apiServer={"clientID": "x"})`` -> a fresh copy of the base project."""
    def make(**changes: Any) -> Path:
        return make_project(doctor_base, tmp_path, **changes)
    return make
