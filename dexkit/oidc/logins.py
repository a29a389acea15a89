"""Which login a command acts on (``dexkit login``, ``dexkit logout``).

Rules:
- 'dexkit token' options that name an issuer (``--issuer``, kubelogin's ``--oidc-issuer-url``)
  describe a login without a project: that login alone, with the command's own ``--grant``
  and ``--username`` (they belong to its cache key too). The project is not read.
- Else the project's login: with clusters in dexkit.yaml, one per cluster (or the one
  ``cluster`` names), each with that cluster's audience; the first is the login made, the
  others are narrowed from it. Without clusters, the one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit.oidc.settings import LoginSettings, build_settings, project_settings

if TYPE_CHECKING:
    from dexkit.config import Config


def standalone(extra: Sequence[str]) -> bool:
    """Whether the 'dexkit token' options ``extra`` describe a login of their own."""
    return any(a.partition("=")[0] in ("--issuer", "--oidc-issuer-url") for a in extra)


@dataclass(frozen=True)
class Logins:
    first: LoginSettings
    others: tuple[LoginSettings, ...] = ()
    per_cluster: bool = False  # the project's, one per cluster of dexkit.yaml

    @property
    def each(self) -> tuple[LoginSettings, ...]:
        return (self.first, *self.others)


def settings_for(directory: Path, extra: Sequence[str], *, grant: str, username: str | None,
                 project: Callable[[], Config], cluster: str | None = None) -> Logins:
    """The logins the command line names (see the module's rules); ``project`` loads
    dexkit.yaml, and is called only for the project's login."""
    if standalone(extra):
        return Logins(build_settings([*extra, *(["--grant", grant] if grant != "authcode" else []),
                                      *(["--username", username] if username else [])]))
    config = project()
    names: list[str | None] = [cluster] if cluster else \
        [c.name for c in config.clusters] or [None]
    each = [project_settings(directory, config, grant=grant, username=username,
                             extra=list(extra), cluster=name) for name in names]
    return Logins(each[0], tuple(each[1:]), per_cluster=bool(config.clusters))
