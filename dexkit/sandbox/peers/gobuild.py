"""Building peers with the machine's ``go``: a generated module per release, resolved through the
module proxy (never ``direct``), linked to a temporary name and renamed into the cache next to
its manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dexkit import files
from dexkit.errors import DexkitError
from dexkit.sandbox.peers.catalog import (
    ENV_OVERRIDES,
    KUBERNETES_MODULE,
    MANIFEST,
    Manifest,
    PeerSpec,
    binary_dir,
    cache_root,
    locate,
    sha256_file,
)
from dexkit.sandbox.peers.gomod import kubernetes_ldflags, staging_modules, staging_version

Progress = Callable[[str], None]
HEARTBEAT_SECONDS = 30.0
GO_TAIL_LINES = 30


# --- building -------------------------------------------------------------------------------


@dataclass
class GoRunner:
    """Runs ``go`` with one environment, output to a log, progress on a heartbeat."""

    workdir: Path
    log_path: Path
    progress: Progress
    go: str = "go"
    env: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def __call__(self, what: str, args: Sequence[str], *, extra_env: Mapping[str, str] | None
                 = None, capture: bool = False, note: str = "") -> str:
        """Run ``go args`` in the work dir; one progress line before, one with the time after."""
        self.progress(f"{what} ..." + (f" ({note})" if note else ""))
        env = {**os.environ, **self.env, **(extra_env or {})}
        started = self.clock()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {self.go} {' '.join(args)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    [self.go, *args], cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if capture else log, stderr=log,
                )
            except FileNotFoundError as exc:
                raise go_missing(self.go) from exc
            out = b""
            next_beat = started + HEARTBEAT_SECONDS
            while True:
                try:
                    if capture:
                        out, _ = proc.communicate(timeout=1.0)
                    else:
                        proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    now = self.clock()
                    if now >= next_beat:
                        self.progress(f"  ... still {what} ({_elapsed(now - started)})")
                        next_beat = now + HEARTBEAT_SECONDS
        elapsed = self.clock() - started
        if proc.returncode != 0:
            lines = _tail_text(self.log_path, GO_TAIL_LINES)
            raise DexkitError(
                f"'go {' '.join(args)}' failed (exit {proc.returncode}) while {what}:\n"
                + "\n".join(f"  {line}" for line in lines),
                f"the whole go output is in {self.log_path}; module proxy refusals (403) mean "
                "that version is not served here")
        self.progress(f"done {what} ({_elapsed(elapsed)})")
        return out.decode()


def go_missing(go: str = "go") -> DexkitError:
    return DexkitError(f"the Go toolchain ('{go}') was not found",
                       "install Go (1.25 or newer) and put it on PATH, or point "
                       "DEXKIT_KUBE_APISERVER / DEXKIT_ETCD / DEXKIT_KUBECTL / DEXKIT_DEX at "
                       "prebuilt binaries")


def go_env(name: str, go: str = "go") -> str:
    """One ``go env`` value (what the go command will use: environment, then its env file)."""
    try:
        result = subprocess.run([go, "env", name], capture_output=True, text=True,
                                check=False, timeout=60,
                                env={**os.environ, "GOTOOLCHAIN": "local"})
    except FileNotFoundError as exc:
        raise go_missing(go) from exc
    if result.returncode != 0:
        raise DexkitError(f"'{go} env {name}' failed: {result.stderr.strip()}",
                          "check the Go installation")
    return result.stdout.strip()


def go_version(go: str = "go") -> str:
    return go_env("GOVERSION", go)


def proxy_without_direct(goproxy: str) -> str:
    """``GOPROXY`` without its ``direct`` entries (``off`` when nothing else is left).

    Go's default, ``https://proxy.golang.org,direct``, falls back to the source hosts whenever
    the proxy refuses a module: traffic that cannot succeed on a machine that reaches only a
    module proxy, and that a build should never make behind its user's back. A refusal then
    reaches the user as the proxy's own 403/404 instead.
    """
    kept: list[str] = []
    separators: list[str] = []
    for part in re.split(r"([,|])", goproxy):
        if part in (",", "|"):
            separators.append(part)
            continue
        if part.strip() and part.strip() != "direct":
            kept.append(part.strip())
    if not kept:
        return "off"
    # A "|" says "fall through on any error", a "," only on 404/410: keep the first kind seen.
    joiner = "|" if "|" in separators else ","
    return joiner.join(kept)


def go_proxy_env(go: str = "go") -> dict[str, str]:
    return {"GOPROXY": proxy_without_direct(go_env("GOPROXY", go))}


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _tail_text(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return []


def _base_env(spec: PeerSpec) -> dict[str, str]:
    env = {
        # Never let `go` swap itself for another toolchain download in the middle of a build.
        "GOTOOLCHAIN": "local",
        # The generated module is resolved by us, on purpose: go.mod is edited, not read-only.
        "GOFLAGS": _join_goflags(os.environ.get("GOFLAGS", ""), "-mod=mod"),
    }
    if spec.cgo is not None:
        env["CGO_ENABLED"] = "1" if spec.cgo else "0"
    if spec.unverified:
        existing = [p for p in os.environ.get("GONOSUMDB", "").split(",") if p]
        env["GONOSUMDB"] = ",".join([*existing, *spec.unverified])
    return env


def _join_goflags(existing: str, *extra: str) -> str:
    flags = existing.split()
    for flag in extra:
        name = flag.split("=", 1)[0]
        if not any(f.split("=", 1)[0] == name for f in flags):
            flags.append(flag)
    return " ".join(flags)


def _init_module(run: GoRunner, name: str) -> None:
    workdir = run.workdir
    for stale in ("go.mod", "go.sum", "tools.go", "overlay.json"):
        (workdir / stale).unlink(missing_ok=True)
    for stale_dir in ("vendor", "replaced"):
        shutil.rmtree(workdir / stale_dir, ignore_errors=True)
    run(f"creating module {name}", ["mod", "init", name])


def _module_info(run: GoRunner, module: str, version: str) -> dict[str, Any]:
    out = run(f"downloading {module}@{version}", ["mod", "download", "-json",
                                                  f"{module}@{version}"], capture=True)
    data: dict[str, Any] = json.loads(out)
    if data.get("Error"):
        raise DexkitError(f"cannot download {module}@{version}: {data['Error']}",
                          "the module proxy does not serve that version here; try another")
    return data


def build_peers(specs: Iterable[PeerSpec], *, progress: Progress, root: Path | None = None,
                go: str = "go", force: bool = False,
                clock: Callable[[], float] = time.monotonic) -> list[Manifest]:
    """Build every spec that is not yet in the cache (all of them with ``force``)."""
    wanted = list(specs)
    root = root or cache_root()
    todo = []
    for spec in wanted:
        override = os.environ.get(ENV_OVERRIDES[spec.name], "")
        if override and not force:
            progress(f"{spec.name}: {ENV_OVERRIDES[spec.name]}={override} is used; not building")
        elif force or locate(spec, root=root, env={}).source == "missing":
            todo.append(spec)
        else:
            progress(f"{spec.name} {spec.version}: already built in {binary_dir(spec, root)}")
    if not todo:
        return []
    gover = go_version(go)
    proxy = go_proxy_env(go)
    manifests: list[Manifest] = []
    # kube-apiserver and kubectl of one release share one generated module.
    groups: dict[tuple[str, str], list[PeerSpec]] = {}
    for spec in todo:
        groups.setdefault((spec.module, spec.module_version), []).append(spec)
    for (module, module_version), group in groups.items():
        manifests += _build_group(module, module_version, group, progress=progress, root=root,
                                  go=go, go_ver=gover, clock=clock, proxy=proxy, force=force)
    return manifests


def _build_group(module: str, module_version: str, group: list[PeerSpec], *, progress: Progress,
                 root: Path, go: str, go_ver: str, clock: Callable[[], float],
                 proxy: Mapping[str, str] | None = None, force: bool = False) -> list[Manifest]:
    first = group[0]
    if not module_version:
        raise DexkitError(
            f"no module version is known for {first.name} {first.version}",
            "set DEXKIT_DEX_MODULE_VERSION to the pseudo-version of the release commit "
            "(v0.0.0-<UTC committer time>-<12-hex commit>)")
    label = "kubernetes" if module == KUBERNETES_MODULE else first.name
    workdir = root / "work" / f"{label}-{first.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    # Two builds of one release at once (two test processes, two terminals) would share the
    # generated module: the second waits for the first and builds only what is still missing.
    lock = FileLock(workdir.parent / f".{workdir.name}.lock")
    if not _try_lock(lock):
        progress(f"[{label} {first.version}] another build of this release is running; "
                 "waiting for it")
        lock.acquire()
    try:
        if not force:
            group = [spec for spec in group
                     if locate(spec, root=root, env={}).source == "missing"]
        if not group:
            progress(f"[{label} {first.version}] built by the other build meanwhile")
            return []
        return _build_locked(module, module_version, group, label=label, workdir=workdir,
                             progress=progress, root=root, go=go, go_ver=go_ver, clock=clock,
                             proxy=proxy)
    finally:
        lock.release()


def _try_lock(lock: FileLock) -> bool:
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


def _build_locked(module: str, module_version: str, group: list[PeerSpec], *, label: str,
                  workdir: Path, progress: Progress, root: Path, go: str, go_ver: str,
                  clock: Callable[[], float],
                  proxy: Mapping[str, str] | None) -> list[Manifest]:
    first = group[0]
    log_path = workdir / "build.log"
    log_path.write_text(f"dexkit build of {module}@{module_version} "
                        f"({dt.datetime.now(dt.UTC).isoformat(timespec='seconds')})\n")
    run = GoRunner(workdir=workdir, log_path=log_path, go=go,
                   env={**_base_env(first), **(proxy or {})}, clock=clock,
                   progress=lambda line: progress(f"[{label} {first.version}] {line}"))
    started = clock()
    _init_module(run, f"dexkit.local/sandbox/{label}")
    info = _module_info(run, module, module_version)
    if module == KUBERNETES_MODULE:
        gomod_path = Path(info["GoMod"])
        modules = staging_modules(gomod_path.read_text())
        target = staging_version(first.version)
        run(f"replacing {len(modules)} staging modules with their {target} releases",
            ["mod", "edit", *[f"-replace={m}={m}@{target}" for m in modules]])
    run(f"resolving {module}@{module_version}",
        ["get", *[f"{spec.package}@{module_version}" for spec in group]])
    commit = str((info.get("Origin") or {}).get("Hash", ""))
    manifests = []
    for spec in group:
        manifests.append(_build_one(spec, run, root=root, go_ver=go_ver, commit=commit,
                                    group_started=started, clock=clock))
        started = clock()
    return manifests


def _build_one(spec: PeerSpec, run: GoRunner, *, root: Path, go_ver: str, commit: str,
               group_started: float, clock: Callable[[], float]) -> Manifest:
    built_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ldflags = list(spec.ldflags)
    if spec.module == KUBERNETES_MODULE:
        ldflags = kubernetes_ldflags(spec.version, commit=commit,
                                     build_date=built_at.replace("+00:00", "Z"))
    directory = binary_dir(spec, root)
    files.ensure_dir(directory, 0o755)
    target = directory / spec.name
    partial = directory / f".{spec.name}.partial"
    partial.unlink(missing_ok=True)
    args = ["build", "-o", str(partial)]
    if spec.replaced:
        args += ["-mod=vendor", f"-overlay={_overlay(spec, run)}"]
    if ldflags:
        args += ["-ldflags", " ".join(ldflags)]
    args.append(spec.package)
    extra = {"CGO_ENABLED": "1" if spec.cgo else "0"} if spec.cgo is not None else None
    run(f"compiling {spec.name}", args, extra_env=extra,
        note=f"a cold build takes minutes; a line every {HEARTBEAT_SECONDS:.0f}s")
    partial.replace(target)
    manifest = Manifest(
        name=spec.name, version=spec.version, module=spec.module,
        module_version=spec.module_version, package=spec.package, go_version=go_ver,
        sha256=sha256_file(target), built_at=built_at,
        build_seconds=round(clock() - group_started, 1), cgo=spec.cgo, ldflags=tuple(ldflags),
        unverified=spec.unverified, replaced=tuple(package for package, _ in spec.replaced),
    )
    files.atomic_write(directory / MANIFEST, manifest.to_json())
    run.progress(f"built {target} ({manifest.build_seconds:.0f}s, sha256 {manifest.sha256[:12]})")
    return manifest


def _overlay(spec: PeerSpec, run: GoRunner) -> Path:
    """Vendor the module (go refuses overlays inside its module cache), then map every Go file
    of each replaced package to nothing but dexkit's one file for it; the overlay's path."""
    work = run.workdir
    files.atomic_write(work / "tools.go", "//go:build tools\n\npackage tools\n\nimport _ "
                       f'"{spec.package}"\n')
    run("vendoring the module (for the replaced packages)", ["mod", "vendor"])
    replace: dict[str, str | None] = {}
    for package, source in spec.replaced:
        vendored = work / "vendor" / package
        if not vendored.is_dir():
            raise DexkitError(f"{package} is not in {spec.module}@{spec.module_version}",
                              "the replaced package moved: check the module")
        for original in sorted(vendored.glob("*.go")):
            replace[str(original)] = None  # deleted from the build
        ours = work / "replaced" / package / "dexkit.go"
        ours.parent.mkdir(parents=True, exist_ok=True)
        ours.write_text(source)
        replace[str(vendored / "dexkit.go")] = str(ours)
    overlay = work / "overlay.json"
    files.atomic_write(overlay, json.dumps({"Replace": replace}, indent=1) + "\n")
    return overlay


def remove_work_dirs(root: Path | None = None) -> None:
    """Drop the generated modules (the Go module and build caches are Go's own)."""
    shutil.rmtree((root or cache_root()) / "work", ignore_errors=True)
