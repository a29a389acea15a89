"""kubectl's credential plugin policy (kuberc, Kubernetes 1.35+), read as kubectl reads it.

kubectl reads its preferences from ``--kuberc``, else ``$KUBERC`` (``off`` turns them off),
else ``~/.kube/kuberc``: a ``kubectl.config.k8s.io/v1beta1`` ``Preference`` whose
``credentialPluginPolicy`` is ``""``/``AllowAll`` (any plugin runs), ``DenyAll`` (none), or
``Allowlist``: a plugin runs only when ``exec.LookPath`` of one ``credentialPluginAllowlist``
entry's ``name`` (kubectl 1.35; 1.37 adds ``command`` and deprecates ``name``) equals the
plugin's (k8s.io/kubectl pkg/config/v1beta1 and client-go's exec authenticator, v1.35.4 and
v1.37.2). An entry kubectl cannot resolve matches nothing; an Allowlist without entries, or
entries with another policy, is an error for kubectl.

:func:`kuberc_advice` says what stops kubectl from running ``dexkit token`` and what to add;
``dexkit kubeconfig`` prints it and ``doctor`` (``local.kuberc``) checks it. Nothing here
writes the file: it is the user's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

ALLOW_ALL = "AllowAll"
DENY_ALL = "DenyAll"
ALLOWLIST = "Allowlist"
POLICIES = ("", ALLOW_ALL, DENY_ALL, ALLOWLIST)


@dataclass(frozen=True)
class PluginPolicy:
    """What one kuberc says about credential plugins."""

    path: Path
    policy: str  # one of POLICIES
    allowlist: tuple[str, ...] = ()
    problem: str | None = None  # the file is there but kubectl would not accept it


def kuberc_path(environ: Mapping[str, str], home: Path | None = None) -> Path | None:
    """The kuberc kubectl reads without --kuberc; None when KUBERC=off."""
    chosen = environ.get("KUBERC")
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    return (home or Path.home()) / ".kube" / "kuberc"


def read_policy(environ: Mapping[str, str] | None = None,
                home: Path | None = None) -> PluginPolicy | None:
    """The policy of the kuberc kubectl reads, or None when there is none (any plugin runs)."""
    path = kuberc_path(os.environ if environ is None else environ, home)
    if path is None or not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return PluginPolicy(path, "", problem=f"kubectl cannot read it ({_short(exc)})")
    if not isinstance(data, dict):
        return PluginPolicy(path, "", problem="it is not a mapping (a Preference)")
    policy = data.get("credentialPluginPolicy") or ""
    entries = data.get("credentialPluginAllowlist")
    if policy not in POLICIES:
        return PluginPolicy(path, str(policy), problem=f"credentialPluginPolicy '{policy}' is "
                            f"none of {', '.join(p for p in POLICIES if p)}")
    names: list[str] = []
    for entry in entries or []:
        value = (entry.get("command") or entry.get("name")) if isinstance(entry, dict) else None
        if isinstance(value, str) and value:
            names.append(value)
    if policy == ALLOWLIST and not names:
        return PluginPolicy(path, policy, problem="the policy is Allowlist and "
                            "credentialPluginAllowlist lists no plugin (kubectl refuses it)")
    return PluginPolicy(path, policy, tuple(names))


def allows(policy: PluginPolicy | None, command: str,
           which: Callable[[str], str | None] = shutil.which) -> bool:
    """Whether kubectl may run ``command`` (the kubeconfig user's exec command) under it."""
    if policy is None or policy.policy in ("", ALLOW_ALL):
        return policy is None or policy.problem is None
    if policy.policy == DENY_ALL or policy.problem is not None:
        return False
    mine = which(command)
    return mine is not None and any(which(entry) == mine for entry in policy.allowlist)


def kuberc_advice(command: str, environ: Mapping[str, str] | None = None,
                  home: Path | None = None,
                  which: Callable[[str], str | None] = shutil.which) -> list[tuple[str, str]]:
    """(message, hint) for each reason kubectl would refuse to run ``command``; [] when it
    may run it."""
    policy = read_policy(environ, home)
    if policy is None or allows(policy, command, which):
        return []
    add = (f"in {policy.path}, set credentialPluginPolicy: Allowlist and add "
           f"{{name: {command}}} to credentialPluginAllowlist (kubectl 1.37 also takes "
           "'command:' for 'name:')")
    if policy.problem is not None:
        return [(f"kubectl's kuberc {policy.path}: {policy.problem}; kubectl refuses to run "
                 "credential plugins until it is fixed", add)]
    if policy.policy == DENY_ALL:
        return [(f"kubectl's kuberc {policy.path} sets credentialPluginPolicy: DenyAll, so "
                 f"kubectl will not run '{command} token' for these users", add)]
    where = which(command) or "not found on PATH"
    return [(f"kubectl's kuberc {policy.path} runs only the credential plugins it lists "
             f"({', '.join(policy.allowlist)}), and '{command}' ({where}) is not one of them",
             add)]


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
