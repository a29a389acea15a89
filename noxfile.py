"""Sessions: tests (everything, e2e included), lint, typecheck, bench, fuzz, kind, soak.

`nox -s tests` is the README's test command and what `.ci/run` runs. e2e tests build the real
peers (etcd, kube-apiserver, kubectl, dex) from their Go modules on first use and cache them
under ~/.cache/dexkit; with DEXKIT_REQUIRE_PEERS=1 (set by .ci/run) a missing peer fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


# `nox -s tests` without arguments: three pytest processes side by side. Each test module that
# takes the machine (marker `machine`: a node sandbox, a container engine) runs in the first, one
# at a time under the machine lock; the level-1 e2e modules (loopback sandboxes) in the second;
# unit, interop, fuzz and packaging in the third. -m machine and -m "not machine" split tests/e2e
# in two with nothing left out.
# The first part is the longest (a node, kind clusters: ~13 of a warm run's 14 minutes): the
# third, which only computes (~5 minutes of both cores), runs at a lower priority (nice 10), so
# it takes the cores the first leaves idle instead of slowing it down.
PARTS = (
    ("e2e, the machine's modules", ["tests/e2e", "-m", "machine"], 0),
    ("e2e, level-1 sandboxes", ["tests/e2e", "-m", "not machine"], 0),
    ("unit, interop, fuzz, packaging", ["tests", "--ignore=tests/e2e"], 10),
)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, interop (openssl, TLS), packaging and e2e tests against real peers.

    Without arguments, the PARTS above run side by side: the e2e tests mostly wait (peers
    starting, Pods rolling out, a kubelet's back-off), the rest mostly computes; on 2 cores that
    hides most of each inside the others. The first part's output is shown as it runs, the
    others' follow it; any part failing fails the session. Peers a cold run builds are built
    once: the second process to want a release waits for the first's build (a lock per release
    in the cache)."""
    session.install("-e", ".[test]")
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    env = {**os.environ, "PATH": f"{session.bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(Path(session.bin).parent)}
    python = str(Path(session.bin) / "python")
    tmp = Path(session.create_tmp())
    (live_name, live_args, _), *others = PARTS
    logs = [tmp / f"pytest-part{number}.log" for number in range(2, len(PARTS) + 1)]
    background = []
    for (_, args, niceness), log in zip(others, logs, strict=True):
        with log.open("w") as out:
            background.append(subprocess.Popen(
                ["nice", "-n", str(niceness), python, "-m", "pytest", "-p", "no:cacheprovider",
                 *args], stdout=out, stderr=subprocess.STDOUT, env=env))
    codes = {}
    try:
        session.log(f"{live_name}, shown as it runs:")
        codes[live_name] = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider",
                                           *live_args], env=env, check=False).returncode
    finally:
        for (name, _, _), process in zip(others, background, strict=True):
            codes[name] = process.wait()
    for (name, _, _), log in zip(others, logs, strict=True):
        session.log(f"{name}, run beside it:")
        sys.stdout.write(log.read_text())
        sys.stdout.flush()
    failed = [f"{name} exit {code}" for name, code in codes.items() if code]
    if failed:
        session.error(f"pytest failed: {'; '.join(failed)}")


@nox.session(python=PYTHON)
def kind(session: nox.Session) -> None:
    """Real kind clusters (tests/e2e/test_kind.py) on every minor dexkit proves and across
    minors (one minor's config on another's node image); CI runs the default minor only, as
    part of `tests`. Builds each minor's node image once (cached by its inputs). Root, Debian's
    docker.io and debootstrap: see docs/ci-kind.md."""
    session.install("-e", ".[test]")
    minors = os.environ.get("DEXKIT_KIND_MINORS", "1.35,1.36,1.37")
    session.run("pytest", "-q", "tests/e2e/test_kind.py", *session.posargs,
                env={"DEXKIT_KIND_MINORS": minors, "DEXKIT_REQUIRE_PEERS": "1"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.12")  # PLC0415 is stable from 0.12
    session.run("ruff", "check", "dexkit", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.10", "types-PyYAML")
    session.run("mypy", "dexkit")


@nox.session(python=PYTHON, reuse_venv=False)
def bench(session: nox.Session) -> None:
    """Side-by-side timings written to BENCHMARKS.md (targets live here, not in tests).

    dexkit is timed as a user installs it: its own dependencies only, in a fresh venv. The
    test extras would change what is measured (selenium brings trio, which httpcore imports
    when it is there: ~45 ms more on every HTTP command)."""
    session.install("-e", ".")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The promise fuzzed for longer than CI can: hypothesis with DEXKIT_FUZZ_EXAMPLES
    (default 5000) per test (the CLI's and dexkit token's inputs), then each atheris target
    for FUZZ_SECONDS (default 300).
    ``nox -s fuzz -- config`` runs only that atheris target."""
    session.install("-e", ".[test]")
    examples = os.environ.get("DEXKIT_FUZZ_EXAMPLES", "5000")
    session.run("pytest", "-q", "tests/fuzz/test_promise.py", "--hypothesis-show-statistics",
                env={"DEXKIT_FUZZ_EXAMPLES": examples})
    session.run("pytest", "-q", "tests/unit/oidc/test_token_inputs.py", "-k", "test_fuzz_",
                "--hypothesis-show-statistics", env={"DEXKIT_FUZZ_EXAMPLES": examples})
    seconds = os.environ.get("FUZZ_SECONDS", "300")
    for target in session.posargs or ["config", "issuer", "patch"]:
        session.run("python", "-m", "tests.fuzz.atheris_targets", target,
                    f"-max_total_time={seconds}", "-print_final_stats=1")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """``deploy --wait`` proven on the real node more times than CI can (issue 20): each of
    DEXKIT_SOAK_NODES (default 10) fresh nodes logs in with kubectl at once after the deploy,
    and the first runs DEXKIT_SOAK_CYCLES (default 20) cycles of certs rotate, deploy --wait
    and verify. Needs what the node tests need (root, Debian's containerd, runc, CNI plugins,
    iptables); about 7 minutes for 20 and 10."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/e2e/test_node_soak.py",
                env={"DEXKIT_REQUIRE_PEERS": "1",
                     "DEXKIT_SOAK_CYCLES": os.environ.get("DEXKIT_SOAK_CYCLES", "20"),
                     "DEXKIT_SOAK_NODES": os.environ.get("DEXKIT_SOAK_NODES", "10")})
