"""Ready setups shipped as data: ``scenarios/<name>/`` with three files each.

- ``dexkit.yaml``: a project config, except that static users carry **no password hash** (and
  may leave out ``userID`` and ``username``). No scenario ships a password: ``dexkit init
  --scenario`` generates one per user, keeps it in ``.dexkit/passwords/<email>`` (0600) and writes
  only its bcrypt hash (see :func:`dexkit.project.complete_static_users`).
- ``expectations.yaml``: the oracle of the scenario's end-to-end test: who logs in and how, the
  username and groups the API server must see, what that user can and cannot do
  (:class:`Expectations`). :meth:`Expectations.verify_args` turns it into the arguments of
  ``dexkit verify``.
- ``README.md``: what the scenario sets up and how it is proven. Its title line,
  ``# <name>: <summary>``, is the one line ``dexkit scenarios`` shows.

Scenarios are found by listing the directory; a name is never joined into a path unchecked.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from dexkit.errors import ConfigError, UsageError
from dexkit.layout import CONFIG_FILE
from dexkit.resources import scenarios_dir

CONFIG = CONFIG_FILE
EXPECTATIONS = "expectations.yaml"
README = "README.md"
FILES = (CONFIG, EXPECTATIONS, README)
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class _Model(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True,
             kw_only=True):
    pass


class ExpectedLogin(_Model, frozen=True, kw_only=True):
    """Who logs in, and with which grant (``dexkit verify --grant``)."""

    grant: Literal["password", "authcode", "device"]
    # The name typed at the login prompt: an email for static users, the uid for LDAP.
    user: str


class ExpectedIdentity(_Model, frozen=True, kw_only=True):
    """How the API server must see that user (``SelfSubjectReview``), prefixes included."""

    username: str
    groups: list[str] = msgspec.field(default_factory=list)


class Expectations(_Model, frozen=True, kw_only=True):
    """``expectations.yaml``: the oracle of a scenario's end-to-end test."""

    # login: the test suite logs in through Dex; offline: it cannot (the reason says why) and
    # proves the rest (render, validation, server-side dry run, RBAC for the identity below).
    proof: Literal["login", "offline"]
    offline_reason: str | None = None
    login: ExpectedLogin
    api_server: ExpectedIdentity
    # 'VERB RESOURCE [NAMESPACE]', as for 'dexkit verify --can/--cannot'.
    can: list[str] = msgspec.field(default_factory=list)
    cannot: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.proof == "offline" and not self.offline_reason:
            raise ValueError("an offline scenario must say why in offlineReason")
        for probe in (*self.can, *self.cannot):
            if len(probe.split()) not in (2, 3):
                raise ValueError(f"'{probe}' is not 'VERB RESOURCE [NAMESPACE]'")

    def verify_args(self) -> list[str]:
        """The ``dexkit verify`` arguments that assert these expectations."""
        args = ["--grant", self.login.grant]
        if self.login.grant == "password":
            args += ["--username", self.login.user]
        args += ["--expect-user", self.api_server.username]
        for group in self.api_server.groups:
            args += ["--expect-group", group]
        for probe in self.can:
            args += ["--can", probe]
        for probe in self.cannot:
            args += ["--cannot", probe]
        return args


@dataclass(frozen=True)
class Scenario:
    name: str
    dir: Path

    @property
    def readme(self) -> Path:
        return self.dir / README

    @cached_property
    def summary(self) -> str:
        """The README's title after ``<name>:``."""
        first = self.readme.read_text().splitlines()[:1]
        title = first[0] if first else ""
        prefix = f"# {self.name}:"
        if not title.startswith(prefix):
            raise ConfigError(f"{self.readme}: the first line must be '{prefix} <summary>'",
                              "this is a bug in the scenario; report it")
        return title[len(prefix):].strip()

    def config_data(self) -> dict[str, Any]:
        """The scenario's dexkit.yaml as plain data (static users still without hashes)."""
        path = self.dir / CONFIG
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}",
                              "this is a bug in the scenario; report it") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping",
                              "this is a bug in the scenario; report it")
        return data

    def expectations(self) -> Expectations:
        return load_expectations(self.dir / EXPECTATIONS)


def load_expectations(path: Path) -> Expectations:
    try:
        result: Expectations = msgspec.yaml.decode(path.read_bytes(), type=Expectations)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}", "fix the expectations file") from None
    return result


def list_scenarios(root: Path | None = None) -> list[Scenario]:
    """Every scenario directory, by name."""
    base = root or scenarios_dir()
    return [Scenario(p.name, p) for p in sorted(base.iterdir())
            if p.is_dir() and _NAME.match(p.name) and (p / CONFIG).is_file()]


def get_scenario(name: str, root: Path | None = None) -> Scenario:
    """The scenario called ``name``; a :class:`UsageError` (exit 2) naming them all if none is."""
    found = list_scenarios(root)
    for scenario in found:
        if scenario.name == name:
            return scenario
    names = [s.name for s in found]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = (f"did you mean '{close[0]}'? " if close else "") + \
        f"scenarios: {', '.join(names)} ('dexkit scenarios' describes them)"
    raise UsageError(f"unknown scenario '{name}'", hint)
