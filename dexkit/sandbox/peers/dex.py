"""The Dex builds the sandbox knows: Dex's release and a commit of its main branch, each required
at the pseudo-version of its commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from dexkit.errors import UsageError

DEX_MODULE = "github.com/dexidp/dex"


@dataclass(frozen=True)
class DexBuild:
    """One Dex the sandbox can build: a release, or a commit of Dex's main branch.

    Dex's ``v2.x`` tags are not versions of the module ``github.com/dexidp/dex`` (no ``/v2``
    suffix), so every Dex is required at the pseudo-version of its commit:
    ``v0.0.0-<committer time, UTC>-<first 12 hex digits>``.
    """

    version: str  # what Dex calls itself (main.version without the v)
    commit: str
    module_version: str
    what: str  # said wherever the peer is named
    # Packages of Dex's module replaced at build time by dexkit's own source (see DEX_MAIN).
    replaced: tuple[tuple[str, str], ...] = ()

    @property
    def is_release(self) -> bool:
        return "-" not in self.version


# v2.45.1 is commit 11d2eeb52b42 (committed 2026-03-03 13:39:05 UTC).
DEX_RELEASE = DexBuild(
    version="2.45.1", commit="11d2eeb52b42e1980e14cb91e69dd9e3faab2076",
    module_version="v0.0.0-20260303133905-11d2eeb52b42", what="Dex v2.45.1 (release)")
# The code of Dex's next release: main at ab64ed778070 (committed 2026-08-06 15:14:24 UTC). Not
# a release. Its version is what Dex's own scripts/git-version gives an untagged commit: the
# newest tag with the minor bumped, the committer time as git prints it (%ci, local time of the
# commit: 17:14:24 +02:00) and eight hex digits.
#
# Built without its gRPC admin API. Dex's go.mod replaces github.com/dexidp/dex/api/v2 with its
# own ./api/v2, a replace that does not apply when Dex is required from another module; the
# require then gives api/v2 v2.4.0, which lacks what main's server/apiserver implements
# (UserIdentity, MFA, sessions, new client fields), and the module proxy serves no api/v2 of a
# later commit (every pseudo-version of the 17 commits that changed it since api/v2.4.0: 403).
# So server/apiserver, whose one caller registers the gRPC API when `grpc.addr` is set, is
# replaced by dexkit's package that answers every call Unimplemented. Everything else
# (server, storage, connectors, grants) is main's code as the module proxy serves it.
_DEX_MAIN_APISERVER = """\
// Package apiserver, replaced by dexkit for its Dex-main test peer: the module proxy serves no
// github.com/dexidp/dex/api/v2 of this Dex commit, and v2.4.0 lacks what Dex's own package
// implements. Dex's gRPC admin API therefore answers every call Unimplemented.
package apiserver

import (
	"log/slog"

	"github.com/dexidp/dex/api/v2"
	"github.com/dexidp/dex/server/backchannel"
	"github.com/dexidp/dex/server/connectors"
	"github.com/dexidp/dex/server/discovery"
	"github.com/dexidp/dex/storage"
)

// NewAPI has Dex's signature (cmd/dex/serve.go is its one caller).
func NewAPI(s storage.Storage, logger *slog.Logger, version string, conns *connectors.Cache,
	disc *discovery.Handler, bc *backchannel.Notifier) api.DexServer {
	logger.Warn("this Dex was built by dexkit without its gRPC API: every call is Unimplemented")
	return api.UnimplementedDexServer{}
}
"""
DEX_MAIN = DexBuild(
    version="2.46.0-20260806171424-ab64ed77", commit="ab64ed778070e983cbb10cfc07ea4bb397d14312",
    module_version="v0.0.0-20260806151424-ab64ed778070",
    what="Dex main at commit ab64ed778070 (2026-08-06; not a release; built without its gRPC "
         "admin API)",
    replaced=(("github.com/dexidp/dex/server/apiserver", _DEX_MAIN_APISERVER),))
DEX_BUILDS: dict[str, DexBuild] = {"release": DEX_RELEASE, "main": DEX_MAIN}
DEFAULT_DEX = "release"
# Kept for callers and the README: the default Dex.
DEX_VERSION = DEX_RELEASE.version
DEX_COMMIT = DEX_RELEASE.commit
DEX_PSEUDO = DEX_RELEASE.module_version


def dex_build(which: str | None = None) -> DexBuild:
    """``release`` (the default) or ``main``."""
    key = which or DEFAULT_DEX
    if key not in DEX_BUILDS:
        raise UsageError(f"unknown Dex build '{key}'", f"use one of {', '.join(DEX_BUILDS)}")
    return DEX_BUILDS[key]


def dex_build_for_version(version: str) -> str | None:
    """The key of the build whose version is ``version`` (``v`` optional), if any."""
    wanted = version.removeprefix("v")
    return next((key for key, build in DEX_BUILDS.items() if build.version == wanted), None)


def dex_build_for_image(image: str) -> str | None:
    """The build whose version an image's tag names (``ghcr.io/dexidp/dex:v2.45.1`` ->
    ``release``), if any: the sandbox runs the Dex that the project's image would run."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return dex_build_for_version(name.split(":", 1)[1]) if ":" in name else None
