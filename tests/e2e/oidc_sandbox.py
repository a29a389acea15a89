"""A sandbox wired like a cluster dexkit deployed to: an API server started with the rendered
OIDC flags, the rendered RBAC applied, and Dex running the rendered Dex config as a process.

Every sandbox with Dex here is started by :func:`dexkit.sandbox.stack.start`, the code behind
``dexkit sandbox up``: Dex before the API server (memory storage) or after it with the rendered
kubernetes storage through the rendered ServiceAccount, and ready only once the API server
accepts a Dex token. What differs from a cluster, and why (each is something a pod gets from
its cluster, not from dexkit's rendering):

- Dex runs as a local process, not a pod: the listeners bind 127.0.0.1 on the issuer's port,
  the TLS and connector-CA paths point at the project's files instead of the Secret mounts, and
  kubernetes storage reads a kubeconfig with the ServiceAccount's token instead of the pod's
  mounted one (or ``memory``, where a test asks for it: a sandbox that starts in 4 s instead
  of 11 s, for tests about logins rather than storage). Everything else (issuer, connectors,
  static users, clients, password connector) is the rendered config.
- The API server gets the rendered ``--oidc-*`` flags through :mod:`dexkit.sandbox.wiring`, as
  ``dexkit sandbox up`` does: only ``--oidc-ca-file`` points at a copy of the project's CA in
  the sandbox instead of the node path.
- The sandbox runs no kube-controller-manager, so the aggregated ClusterRoles (view, edit,
  admin) have no rules; :func:`aggregate_cluster_roles` fills them in as its
  clusterrole-aggregation controller would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from dexkit.config import Config, load_config
from dexkit.render.dex import credential_envs
from dexkit.sandbox import controlplane, stack, wiring
from dexkit.sandbox.dexlocal import local_dex_config

__all__ = ["aggregate_cluster_roles", "dex_environment", "kubectl_run", "local_dex_config",
           "oidc_apiserver_options", "start_stack"]


def kubectl_run(kubectl: Path, plane: controlplane.ControlPlane, *args: str,
                stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl), "--kubeconfig", str(plane.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def aggregate_cluster_roles(kubectl: Path, plane: controlplane.ControlPlane) -> None:
    """Give every ClusterRole with an aggregationRule the rules of the roles it selects."""
    for _ in range(3):  # admin <- edit <- view: a few rounds reach the fixed point
        listed = kubectl_run(kubectl, plane, "get", "clusterroles", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        roles: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
        changed = False
        for role in roles:
            selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
            if not selectors:
                continue
            rules: list[Any] = []
            for other in roles:
                labels = other["metadata"].get("labels") or {}
                if other is role or not any(
                        all(labels.get(k) == v for k, v in (s.get("matchLabels") or {}).items())
                        for s in selectors):
                    continue
                rules += [r for r in other.get("rules") or [] if r not in rules]
            if rules != (role.get("rules") or []):
                patch = json.dumps({"rules": rules})
                done = kubectl_run(kubectl, plane, "patch", "clusterrole",
                                   role["metadata"]["name"], "--type=merge", "-p", patch)
                assert done.returncode == 0, done.stderr
                changed = True
        if not changed:
            return


def oidc_apiserver_options(config: Config, project: Path, sandbox_dir: Path,
                           kubernetes_version: str) -> controlplane.ControlPlaneOptions:
    """The API-server side of ``config`` as ``dexkit sandbox up`` wires it (dexkit's rendered
    flags, the CA moved into the sandbox's files/), for a sandbox in ``sandbox_dir``."""
    files_dir = controlplane.SandboxLayout(sandbox_dir.resolve()).files
    wired = wiring.apiserver_wiring(config, project.resolve(), files_dir)
    return controlplane.ControlPlaneOptions(
        extra_args=wired.args, extra_files=wired.files, kubernetes_version=kubernetes_version)


def dex_environment(config: Config, values: dict[str, str]) -> dict[str, str]:
    """The variables the rendered config reads credentials from ($LDAP_BIND_PASSWORD, ...),
    each from ``values``; every one the config needs must be given."""
    wanted = [e.env for e in credential_envs(config).all()]
    missing = [name for name in wanted if name not in values]
    assert not missing, f"the test gives Dex no value for {missing}"
    return {name: values[name] for name in wanted}


def start_stack(project: Path, binaries: controlplane.ControlPlaneBinaries, dex: Path,
                kubernetes_version: str, *, mode: wiring.Mode | None = None,
                storage: stack.StorageChoice = "memory", env: dict[str, str] | None = None,
                connector_cas: dict[str, Path] | None = None,
                login: tuple[str, str] | None = None,
                sandbox: Path | None = None) -> stack.Stack:
    """``dexkit sandbox up`` for ``project``, in-process, its peers tied to this process."""
    config = load_config(project).config
    return stack.start(stack.StackRequest(
        project=project, config=config, binaries=binaries, kubernetes_version=kubernetes_version,
        dex=dex, mode=mode, storage=storage,
        env={**os.environ, **dex_environment(config, env or {})},
        connector_cas=connector_cas or {}, login=login, sandbox=sandbox))
