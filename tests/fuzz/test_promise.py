"""The README's promise, fuzzed through the real CLI (in process, a few ms a run).

For any dexkit.yaml, any issuer and any static-pod manifest: either the command succeeds and
what it wrote is right (certs check agrees with init; the patched manifest has dexkit's flags
exactly once, everything else unchanged, the same line ends, and a second patch changes
nothing), or it fails with exit 1 or 2, one ``error:`` and one ``hint:`` line, no traceback,
no file changed and no secret printed.

Bounded for CI (a few seconds each); ``DEXKIT_FUZZ_EXAMPLES=N`` runs N examples per test, and
``nox -s fuzz`` runs these long plus the coverage-guided atheris targets
(``tests/fuzz/atheris_targets.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import CONFIG_BYTES, ISSUERS, MARKER, manifests
from tests.promise import Result, assert_clean_failure, assert_no_traceback, run, snapshot

pytestmark = pytest.mark.fuzz
EXAMPLES = int(os.environ.get("DEXKIT_FUZZ_EXAMPLES", "0"))


def budget(default: int) -> Callable[[Any], Any]:
    # In CI (no DEXKIT_FUZZ_EXAMPLES) the examples are the same every run, so a red CI points
    # at a change, not at luck; long runs draw new ones each time.
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def _check(result: Result, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """The promise for one run; True when it succeeded."""
    if result.code == 0:
        assert_no_traceback(result, secrets=(MARKER,))
        return True
    assert_clean_failure(result, secrets=(MARKER,))
    assert after == before, "a failed command changed files"
    return False


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="dexkit-fuzz-"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


def _fresh(scratch: Path, name: str) -> Path:
    path = scratch / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


# --- dexkit.yaml ------------------------------------------------------------------------------


@budget(400)
@given(raw=CONFIG_BYTES)
def test_any_dexkit_yaml_is_read_or_refused_cleanly(scratch: Path, raw: bytes) -> None:
    project = _fresh(scratch, "config")
    (project / "dexkit.yaml").write_bytes(raw)
    before = snapshot(project)
    _check(run("apiserver", "flags", "--dir", project), before, snapshot(project))


@budget(120)
@given(raw=CONFIG_BYTES)
def test_init_over_any_dexkit_yaml_is_all_or_nothing(scratch: Path, raw: bytes) -> None:
    project = _fresh(scratch, "init")
    (project / "dexkit.yaml").write_bytes(raw)
    before = snapshot(project)
    if _check(run("init", "--dir", project), before, snapshot(project)):
        assert run("certs", "check", "--dir", project).code == 0
        again = run("init", "--dir", project)
        assert again.code == 0 and "created" not in again.err and "updated" not in again.err


# --- issuers ----------------------------------------------------------------------------------


@budget(400)
@given(issuer=ISSUERS)
def test_any_issuer_is_accepted_for_good_or_refused_cleanly(scratch: Path, issuer: str) -> None:
    base = _fresh(scratch, "issuer")
    project = base / "p"
    result = run("init", "--dir", project, "--issuer", issuer)
    if not _check(result, {}, snapshot(project)):
        assert result.code == 2 and not project.exists()
        return
    # What init accepts, dexkit's own check accepts, and every artefact names byte for byte.
    check = run("certs", "check", "--dir", project)
    assert check.code == 0, (issuer, check.err)
    flags = json.loads(run("apiserver", "flags", "--dir", project, "-o", "json").out)
    assert f"--oidc-issuer-url={issuer}" in flags["flags"]
    assert MARKER not in issuer


# --- the static-pod patcher -------------------------------------------------------------------


@pytest.fixture(scope="module")
def projects(scratch: Path) -> dict[str, Path]:
    found = {}
    for mode in ("flags", "authentication-config"):
        path = scratch / f"project-{mode}"
        path.mkdir()
        (path / "dexkit.yaml").write_text(f"apiServer:\n  mode: {mode}\n  requiredClaims:\n"
                                          "    hd: example.com\n")
        assert run("init", "--dir", path).code == 0
        found[mode] = path
    return found


def _owned(name: str) -> bool:
    word = (name.split() or [""])[0]  # '--oidc-issuer-url x' as one item: dexkit's, misspelt
    return word.startswith("oidc-") or word == "authentication-config"


def _pflag(command: list[Any]) -> tuple[dict[str, list[str]], list[str]]:
    """kube-apiserver's reading (pflag) of the command: dexkit's flags with their values (a
    flag without '=' takes the next item; an item whose name is no flag name, such as
    '--oidc-issuer-url https://old', is one unknown flag and takes nothing), and every other
    item in order."""
    owned: dict[str, list[str]] = {}
    other: list[str] = []
    args = [str(a) for a in command[1:]]
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        name = name.replace("_", "-")  # component-base's WordSepNormalizeFunc
        if _owned(name):
            if not eq and re.fullmatch(r"[a-z0-9-]+", name) and i + 1 < len(args):
                value, i = args[i + 1], i + 1
            owned.setdefault(name, []).append(value)
        else:
            other.append(arg)
        i += 1
    return owned, other


def _apiserver_command(text: str) -> list[Any]:
    pod = yaml.safe_load(text)
    for container in pod["spec"]["containers"]:
        if str(container["command"][0]).endswith("kube-apiserver"):
            return list(container["command"])
    raise AssertionError("no kube-apiserver container")


@budget(40)
@given(text=manifests(), mode=st.sampled_from(["flags", "authentication-config"]))
def test_any_manifest_is_patched_exactly_or_left_alone(projects: dict[str, Path],
                                                       scratch: Path, text: str,
                                                       mode: str) -> None:
    for project in (projects[mode],):
        node = _fresh(scratch, "node")
        manifest = node / "manifests/kube-apiserver.yaml"
        manifest.parent.mkdir()
        raw = text.encode()
        manifest.write_bytes(raw)
        before = snapshot(node)
        result = run("apiserver", "patch", manifest, "--dir", project)
        if not _check(result, before, snapshot(node)):
            continue
        new = manifest.read_bytes()
        wanted = json.loads(run("apiserver", "flags", "--dir", project, "-o", "json").out)
        want = {f[2:].split("=", 1)[0]: [f[2:].split("=", 1)[1]] for f in wanted["flags"]}
        owned, other = _pflag(_apiserver_command(new.decode()))
        assert owned == want, (mode, owned)
        assert other == _pflag(_apiserver_command(text))[1], mode
        if b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n"):
            assert new.count(b"\n") == new.count(b"\r\n"), "CRLF lost"
        if new != raw:
            (backup,) = (node / "dexkit-backups").iterdir()
            assert backup.read_bytes() == raw
        again = run("apiserver", "patch", manifest, "--dir", project)
        assert again.code == 0 and "already configured" in again.err, again.err
        assert manifest.read_bytes() == new
