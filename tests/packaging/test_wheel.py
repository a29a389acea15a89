"""The wheel a user installs: it ships templates/ and scenarios/ and `dexkit init` works from
it in an empty directory outside the repository, in a fresh virtualenv."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True)
    (built,) = out.glob("dexkit-*.whl")
    return built


def test_wheel_ships_the_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "dexkit/_data/templates/dex/deployment.yaml.j2" in names
    assert any(n.startswith("dexkit/_data/scenarios/") for n in names)
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_fresh_venv_install_runs_init(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = env_dir / "bin" / "pip"
    subprocess.run([pip, "install", "--quiet", "--disable-pip-version-check", wheel], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run([env_dir / "bin" / "dexkit", "init"], cwd=work, capture_output=True,
                            text=True, check=False, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    assert (work / "dexkit.yaml").is_file()
    assert (work / "ssl" / "cert.pem").is_file()
    where = subprocess.run([env_dir / "bin" / "python", "-c",
                            "import dexkit.resources as r; print(r.templates_dir())"],
                           cwd=work, capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in where, "templates must come from the installed wheel"
