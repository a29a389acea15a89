"""API-server checks over kube-apiserver Pods (kubeadm's manifest, patched by dexkit) and
local command lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import yaml

from dexkit import pki
from dexkit.config import Config, load_config
from dexkit.doctor.apiserver import ApiServerView, pod_view
from dexkit.doctor.core import Context
from dexkit.render.apiserver import patch_static_pod, render_authentication_config
from tests.unit.doctor.helpers import ca_and_leaf, context, run
from tests.unit.render.helpers import FIXTURES

Project = Callable[..., Path]


def _pod(config: Config, edit: Callable[[list[str]], list[str]] | None = None) -> dict[str, Any]:
    """kubeadm's kube-apiserver Pod with dexkit's patch, as the API server lists it."""
    text = patch_static_pod((FIXTURES / "kube-apiserver-1.34.yaml").read_text(), config).text
    pod = yaml.safe_load(text)
    container = pod["spec"]["containers"][0]
    if edit is not None:
        container["command"] = edit(container["command"])
    pod["metadata"]["name"] = "kube-apiserver-node1"
    return pod


def _ctx(project: Path, views: list[ApiServerView]) -> Context:
    return context(project, facts={"apiserver.views": views})


def _views(project: Path, edit: Callable[[list[str]], list[str]] | None = None,
           ) -> tuple[Config, list[ApiServerView]]:
    config = load_config(project).config
    view = pod_view(_pod(config, edit), config)
    assert view is not None
    return config, [view]


def test_pod_patched_by_dexkit_passes(new_project: Project) -> None:
    project = new_project()
    _, views = _views(project)
    ctx = _ctx(project, views)
    assert run(ctx, "apiserver.visible").message == "Pod kube-system/kube-apiserver-node1"
    assert run(ctx, "apiserver.mode").status == "ok"
    assert run(ctx, "apiserver.oidc").status == "ok"
    ca = run(ctx, "apiserver.ca")
    assert ca.status == "ok"
    assert "--oidc-ca-file=/etc/ssl/certs/openid-ca.pem is mounted from the node (hostPath " \
           "/etc/ssl/certs at /etc/ssl/certs)" in ca.message


def test_both_modes_at_once_fail(new_project: Project) -> None:
    project = new_project()
    _, views = _views(project, lambda cmd: [*cmd, "--authentication-config=/etc/k/a.yaml"])
    result = run(_ctx(project, views), "apiserver.mode")
    assert result.status == "fail"
    assert "has both --authentication-config and --oidc-ca-file, --oidc-client-id" in \
        result.message
    assert "refuses to start with both" in result.message
    assert "dexkit apiserver patch" in result.hint


def test_no_oidc_configuration_fails(new_project: Project) -> None:
    project = new_project()
    _, views = _views(project, lambda cmd: [c for c in cmd if not c.startswith("--oidc-")])
    result = run(_ctx(project, views), "apiserver.mode")
    assert result.status == "fail" and "accepts no token from Dex" in result.message


def test_other_mode_than_configured_warns(new_project: Project) -> None:
    project = new_project(apiServer={"mode": "authentication-config"})
    view = pod_view(_pod_flags(project), load_config(project).config)
    assert view is not None
    result = run(_ctx(project, [view]), "apiserver.mode")
    assert result.status == "warn" and "dexkit.yaml says apiServer.mode: " \
        "authentication-config" in result.message


def _pod_flags(project: Path) -> dict[str, Any]:
    """The Pod as dexkit patches it for flags mode, whatever the project's mode."""
    config = load_config(project).config
    flags = msgspec.structs.replace(config, api_server=msgspec.structs.replace(
        config.api_server, mode="flags"))
    return _pod(flags)


def _replace(flag: str, value: str) -> Callable[[list[str]], list[str]]:
    return lambda cmd: [f"--{flag}={value}" if c.startswith(f"--{flag}=") else c for c in cmd]


def test_client_id_mismatch_fails_naming_the_flag(new_project: Project) -> None:
    project = new_project()
    _, views = _views(project, _replace("oidc-client-id", "example-app"))
    result = run(_ctx(project, views), "apiserver.oidc")
    assert result.status == "fail"
    assert result.message == ("Pod kube-system/kube-apiserver-node1: --oidc-client-id is "
                              "'example-app', dexkit.yaml says 'kubernetes'")


def test_issuer_with_trailing_slash_on_the_api_server_fails(new_project: Project) -> None:
    project = new_project()
    _, views = _views(project, _replace("oidc-issuer-url", "https://dex.example.com:32000/"))
    result = run(_ctx(project, views), "apiserver.oidc")
    assert result.status == "fail"
    assert "they differ only by a trailing slash; they must match byte for byte" in \
        result.message


def test_defaults_are_applied_as_the_api_server_applies_them(new_project: Project) -> None:
    project = new_project()
    # '-' (dexkit's spelling) and no flag at all mean the same for the email claim
    _, views = _views(project, lambda cmd: [c for c in cmd
                                            if not c.startswith("--oidc-username-prefix")])
    assert run(_ctx(project, views), "apiserver.oidc").status == "ok"
    # ... but not for sub: the API server then prefixes '<issuer>#'
    project = new_project(apiServer={"usernameClaim": "sub", "usernamePrefix": "-"})
    _, views = _views(project, lambda cmd: [c for c in cmd
                                            if not c.startswith("--oidc-username-prefix")])
    result = run(_ctx(project, views), "apiserver.oidc")
    assert result.status == "fail"
    assert "--oidc-username-prefix is 'https://dex.example.com:32000#', dexkit.yaml says ''" \
        in result.message


def test_ca_file_not_mounted_fails(new_project: Project) -> None:
    project = new_project(apiServer={"caFile": "/opt/dex/ca.pem"})
    config = load_config(project).config
    pod = _pod(config)
    container = pod["spec"]["containers"][0]
    container["volumeMounts"] = [m for m in container["volumeMounts"]
                                 if not m["name"].startswith("dexkit-")]
    view = pod_view(pod, config)
    assert view is not None
    result = run(_ctx(project, [view]), "apiserver.ca")
    assert result.status == "fail"
    assert "--oidc-ca-file=/opt/dex/ca.pem is not mounted into the Pod" in result.message
    assert "dexkit apiserver snippet" in result.hint


def _local(project: Path, args: list[str]) -> ApiServerView:
    return ApiServerView("the project's sandbox kube-apiserver (pid 1)", tuple(args), None,
                         load_config(project).config)


def test_local_ca_file_with_another_ca_fails(new_project: Project, tmp_path: Path) -> None:
    project = new_project(apiServer={"caFile": str(tmp_path / "oidc-ca.pem")})
    other, _, _, _ = ca_and_leaf(["x"], common_name="Other CA")
    (tmp_path / "oidc-ca.pem").write_bytes(pki.cert_pem(other))
    view = _local(project, [f"--oidc-ca-file={tmp_path / 'oidc-ca.pem'}",
                            "--oidc-issuer-url=https://dex.example.com:32000"])
    result = run(_ctx(project, [view]), "apiserver.ca")
    assert result.status == "fail"
    assert "holds CN=Other CA,O=dexkit, not dexkit's CA" in result.message
    assert "restart the API server" in result.hint
    (tmp_path / "oidc-ca.pem").write_bytes((project / "ssl/ca.pem").read_bytes())
    assert run(_ctx(project, [view]), "apiserver.ca").status == "ok"


def test_local_authentication_config_is_read_and_compared(new_project: Project,
                                                          tmp_path: Path) -> None:
    project = new_project(apiServer={"mode": "authentication-config"})
    config = load_config(project).config
    path = tmp_path / "authn.yaml"
    path.write_text(render_authentication_config(config, (project / "ssl/ca.pem").read_text()))
    view = _local(project, [f"--authentication-config={path}"])
    ctx = _ctx(project, [view])
    assert run(ctx, "apiserver.mode").status == "ok"
    assert run(ctx, "apiserver.oidc").status == "ok"
    assert run(ctx, "apiserver.ca").status == "ok"
    data = yaml.safe_load(path.read_text())
    data["jwt"][0]["issuer"]["audiences"] = ["example-app"]
    data["jwt"][0]["claimMappings"]["groups"]["prefix"] = ""
    path.write_text(yaml.safe_dump(data))
    result = run(_ctx(project, [view]), "apiserver.oidc")
    assert result.status == "fail"
    assert "issuer.audiences is 'example-app', dexkit.yaml says 'kubernetes'" in result.message
    assert "claimMappings.groups.prefix is '', dexkit.yaml says 'oidc:'" in result.message


def test_expressions_and_more_issuers_are_compared_as_rendered(new_project: Project,
                                                               tmp_path: Path) -> None:
    extra = {"issuer": {"url": "https://ci.example.com", "audiences": ["ci"]},
             "claimMappings": {"username": {"claim": "sub", "prefix": "ci:"}}}
    project = new_project(apiServer={"mode": "authentication-config", "audiences": ["argocd"],
                                     "usernameExpression": "claims.name",
                                     "groupsExpression": "claims.groups", "extraJWT": [extra]})
    config = load_config(project).config
    path = tmp_path / "authn.yaml"
    path.write_text(render_authentication_config(config, (project / "ssl/ca.pem").read_text()))
    view = _local(project, [f"--authentication-config={path}"])
    assert run(_ctx(project, [view]), "apiserver.oidc").status == "ok"
    data = yaml.safe_load(path.read_text())
    data["jwt"][0]["claimMappings"]["username"]["expression"] = "claims.email"
    path.write_text(yaml.safe_dump(data))
    result = run(_ctx(project, [view]), "apiserver.oidc")
    assert result.status == "fail"
    assert "claimMappings.username.expression is 'claims.email'" in result.message


def test_authentication_config_on_a_node_is_not_read(new_project: Project) -> None:
    project = new_project(apiServer={"mode": "authentication-config"})
    _, views = _views(project)
    ctx = _ctx(project, views)
    assert run(ctx, "apiserver.mode").status == "ok"
    oidc = run(ctx, "apiserver.oidc")
    assert oidc.status == "skip" and "cannot be read from here" in oidc.message
    assert run(ctx, "apiserver.ca").status == "ok"


def test_no_visible_api_server_is_a_skip_pointing_at_login(new_project: Project) -> None:
    result = run(_ctx(new_project(), []), "apiserver.visible")
    assert result.status == "skip" and "--login password" in result.message


def test_flags_in_both_spellings() -> None:
    view = ApiServerView("x", ("--a=1", "--b", "2", "--c", "--a=3"), None, None)  # type: ignore[arg-type]
    assert view.flags() == {"a": ["1", "3"], "b": ["2"], "c": [""]}
    assert view.flag("a") == "3"


def test_authentication_config_with_a_trailing_slash_issuer(new_project: Project,
                                                            tmp_path: Path) -> None:
    project = new_project(apiServer={"mode": "authentication-config"})
    config = load_config(project).config
    path = tmp_path / "authn.yaml"
    text = render_authentication_config(config, (project / "ssl/ca.pem").read_text())
    path.write_text(text.replace("url: https://dex.example.com:32000",
                                 "url: https://dex.example.com:32000/"))
    result = run(_ctx(project, [_local(project, [f"--authentication-config={path}"])]),
                 "apiserver.oidc")
    assert result.status == "fail"
    assert result.message == (f"{path} has no jwt issuer.url equal to "
                              "https://dex.example.com:32000 ('https://dex.example.com:32000/': "
                              "they differ only by a trailing slash)")

