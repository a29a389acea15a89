"""A sandbox wired like a cluster dexkit deployed to: an API server started with the rendered
OIDC flags, the rendered RBAC applied, and Dex running the rendered Dex config as a process.

What differs from a cluster, and why (each is something a pod gets from its cluster, not from
dexkit's rendering):

- Dex runs as a local process, not a pod: ``storage`` becomes ``memory`` (no in-cluster
  service account to reach the kubernetes storage with), the listeners bind 127.0.0.1 on the
  issuer's port, and the TLS and connector-CA paths point at the project's files instead of the
  Secret mounts. Everything else (issuer, connectors, static users, clients, password connector)
  is the rendered config, byte for byte the same data.
- The API server gets the rendered ``--oidc-*`` flags through :mod:`dexkit.sandbox.wiring`, as
  ``dexkit sandbox up`` does: only ``--oidc-ca-file`` points at a copy of the project's CA in
  the sandbox instead of the node path.
- The sandbox runs no kube-controller-manager, so the aggregated ClusterRoles (view, edit,
  admin) have no rules; :func:`aggregate_cluster_roles` fills them in as its
  clusterrole-aggregation controller would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dexkit.config import Config
from dexkit.render.dex import credential_envs
from dexkit.sandbox import controlplane, wiring
from dexkit.sandbox.dexlocal import local_dex_config

__all__ = ["DexSandbox", "aggregate_cluster_roles", "dex_environment", "kubectl_run",
           "local_dex_config", "oidc_apiserver_options", "start_dex_sandbox",
           "wait_until_dex_tokens_are_accepted"]


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


@dataclass
class DexSandbox:
    """A running API server + Dex for one dexkit project (see the module docstring)."""

    plane: controlplane.ControlPlane
    project: Path
    config: Config

    @property
    def ca(self) -> Path:
        return self.project / self.config.tls.dir / "ca.pem"

    def password(self, user: str) -> str:
        return (self.project / ".dexkit" / "passwords" / user).read_text().strip()


def start_dex_sandbox(root: Path, binaries: controlplane.ControlPlaneBinaries, dex: Path, *,
                      kubernetes_version: str, mode: str = "flags",
                      edit: Callable[[dict[str, Any]], None] | None = None) -> DexSandbox:
    """``dexkit init --connector static`` in ``root/project`` (dexkit.yaml changed by
    ``edit``), then the API server with the rendered OIDC side and Dex with the rendered
    config; returns once a Dex token is accepted (the API server fetches Dex's discovery in
    the background and retries only every 10 s)."""
    import os

    import yaml

    from dexkit.__main__ import main
    from dexkit.config import load_config, validate_values
    from dexkit.project import render_config_file

    port, telemetry = controlplane.free_ports(2)
    project = root / "project"
    try:
        main(["init", "--dir", str(project), "--issuer", f"https://127.0.0.1:{port}",
              "--connector", "static"])
    except SystemExit as exc:
        assert not exc.code, "dexkit init failed"
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["kubernetesVersion"] = ".".join(kubernetes_version.split(".")[:2])
    data["apiServer"]["mode"] = mode
    if edit is not None:
        edit(data)
    path.write_text(render_config_file(validate_values(data)))
    config = load_config(project).config
    sandbox = root / "sandbox"
    plane = controlplane.start_control_plane(
        sandbox, binaries, oidc_apiserver_options(config, project, sandbox, kubernetes_version))
    try:
        dex_config = project / "dex-local.yaml"
        dex_config.write_text(local_dex_config(config, project, telemetry_port=telemetry))
        controlplane.start_dex(plane, dex, dex_config, telemetry_addr=f"127.0.0.1:{telemetry}",
                               env={**os.environ, **dex_environment(config, {})})
        box = DexSandbox(plane, project, config)
        wait_until_dex_tokens_are_accepted(box)
        return box
    except BaseException:
        plane.stop()
        raise


def wait_until_dex_tokens_are_accepted(box: DexSandbox, timeout: float = 40.0) -> None:
    """A password-grant token answers a SelfSubjectReview with 200 (not 401)."""
    import time

    from dexkit.errors import ClusterError
    from dexkit.kube import Target, connect, who_am_i
    from dexkit.oidc.session import http_client, login
    from dexkit.oidc.settings import project_settings

    user = box.config.static_users[0].email
    settings = project_settings(box.project, box.config, grant="password", username=user)
    with http_client(settings) as http:
        token = login(settings, http=http, store=False).tokens.id_token
    deadline = time.monotonic() + timeout
    while True:
        try:
            who_am_i(connect(Target(box.plane.kubeconfig, None), bearer_token=token))
            return
        except ClusterError as exc:
            if "401" not in exc.message:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
