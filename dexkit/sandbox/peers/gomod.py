"""Go module arithmetic, pure: staging-module releases, pseudo-versions, Kubernetes' version
ldflags and the ``replace`` directives of a go.mod.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dexkit.errors import DexkitError, UsageError


def staging_version(kubernetes_version: str) -> str:
    """The staging modules' release for a Kubernetes release: ``1.34.4`` -> ``v0.34.4``."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".")
    if major != "1":
        raise UsageError(f"Kubernetes {kubernetes_version} has no staging-module mapping",
                         "use a 1.x release")
    return f"v0.{minor}.{patch}"


_PSEUDO = re.compile(r"^v0\.0\.0-(\d{14})-([0-9a-f]{12})$")


def pseudo_version(commit: str, committed_at: dt.datetime) -> str:
    """The Go pseudo-version of an untagged commit: ``v0.0.0-<UTC yyyymmddhhmmss>-<12 hex>``."""
    if not re.fullmatch(r"[0-9a-f]{12,40}", commit):
        raise UsageError(f"'{commit}' is not a git commit hash", "give 12 to 40 hex digits")
    if committed_at.tzinfo is None:
        raise UsageError("the commit time needs a time zone", "give it in UTC")
    stamp = committed_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"v0.0.0-{stamp}-{commit[:12]}"


def check_pseudo_version(version: str, commit: str) -> None:
    """Refuse a pseudo-version that is malformed or names another commit."""
    match = _PSEUDO.match(version)
    if not match:
        raise UsageError(f"'{version}' is not a v0.0.0 pseudo-version",
                         "expected v0.0.0-<yyyymmddhhmmss>-<12 hex digits>")
    if not commit.startswith(match[2]):
        raise UsageError(f"pseudo-version {version} names commit {match[2]}, not {commit[:12]}",
                         "take the commit hash of the release tag")


def kubernetes_ldflags(kubernetes_version: str, *, commit: str = "",
                       build_date: str = "") -> list[str]:
    """``-X`` flags so that ``--version`` and ``/version`` report the real release."""
    major, minor, _ = kubernetes_version.split(".")
    values = {
        "gitVersion": f"v{kubernetes_version}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    if commit:
        values["gitCommit"] = commit
    if build_date:
        values["buildDate"] = build_date
    flags: list[str] = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return flags


# --- go.mod ---------------------------------------------------------------------------------

_REPLACE_LINE = re.compile(
    r"^(?P<path>\S+)(?:\s+(?P<version>v\S+))?\s*=>\s*(?P<target>\S+)(?:\s+(?P<tversion>v\S+))?$"
)


@dataclass(frozen=True)
class Replace:
    path: str
    target: str
    version: str | None = None
    target_version: str | None = None

    @property
    def is_local(self) -> bool:
        """A replacement by a directory (``./x``, ``../x`` or absolute), not by a module."""
        return self.target.startswith(("./", "../", "/")) or self.target in (".", "..")


def parse_replaces(gomod: str) -> list[Replace]:
    """Every ``replace`` directive of a go.mod text, single-line or in a block."""
    replaces: list[Replace] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if in_block:
            if line == ")":
                in_block = False
                continue
            body = line
        elif line.startswith("replace"):
            rest = line[len("replace"):].strip()
            if rest == "(":
                in_block = True
                continue
            if not rest or not raw.lstrip().startswith(("replace ", "replace\t", "replace(")):
                continue
            body = rest
        else:
            continue
        match = _REPLACE_LINE.match(body)
        if match:
            replaces.append(Replace(path=match["path"], target=match["target"],
                                    version=match["version"],
                                    target_version=match["tversion"]))
    return replaces


def staging_modules(gomod: str) -> list[str]:
    """The modules that k8s.io/kubernetes replaces with its own ``staging/`` directories."""
    modules = [r.path for r in parse_replaces(gomod)
               if r.is_local and r.target.lstrip("./").startswith("staging/")]
    if not modules:
        raise DexkitError("the k8s.io/kubernetes go.mod lists no staging modules",
                          "the module layout changed; check the go.mod of that release")
    return sorted(set(modules))
