"""dexkit.__main__ as a whole process or inside another: the cycle collector's state."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path


def test_an_in_process_run_leaves_the_collector_as_it_was(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    frozen = gc.get_freeze_count()
    assert dexkit("init", "--dir", project).code == 0
    assert dexkit("render", "--dir", project, "--out", project / "out").code == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # the test process's objects are still collected


def test_the_program_collects_while_the_command_works_and_skips_it_at_exit(
        tmp_path: Path) -> None:
    """As the program (no argv, as the dexkit script calls it), the collector is off during
    the start-up, on while the command runs, and the objects left are handed to the OS."""
    code = ("import atexit, gc, sys\n"
            "from dexkit import project\n"
            "seen = []\n"
            "real = project.init_project\n"
            "def spy(*a, **k):\n"
            "    seen.append(gc.isenabled())\n"
            "    return real(*a, **k)\n"
            "project.init_project = spy\n"
            "import dexkit.cli.init\n"
            "dexkit.cli.init.init_project = spy\n"
            "atexit.register(lambda: print(seen, gc.get_freeze_count() > 0))\n"
            "from dexkit.__main__ import main\n"
            "sys.argv = ['dexkit', 'init', '--dir', 'p']\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, check=False, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[True] True"
    assert (tmp_path / "p" / "dexkit.yaml").is_file()
