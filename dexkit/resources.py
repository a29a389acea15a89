"""Where the data directories are: inside the wheel, or beside the package in a checkout.

The wheel ships ``templates/`` and ``scenarios/`` as ``dexkit/_data/…`` (see pyproject's
force-include); a source checkout or an editable install finds them at the repository root.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"dexkit's {name}/ directory is missing from this installation")


def templates_dir() -> Path:
    return data_dir("templates")


def scenarios_dir() -> Path:
    return data_dir("scenarios")
