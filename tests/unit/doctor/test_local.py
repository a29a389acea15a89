"""Local checks on projects made by dexkit init, each broken in one way."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import yaml

from dexkit import pki
from dexkit.kubeconfig import exec_user
from tests.unit.doctor.helpers import ISSUER, NOW, ca_and_leaf, context, issue, run

Project = Callable[..., Path]


def test_healthy_project_passes_every_local_check(new_project: Project) -> None:
    ctx = context(new_project())
    for check_id in ("local.config", "local.tls-files", "local.key-match", "local.chain",
                     "local.sans", "local.expiry"):
        assert run(ctx, check_id).status == "ok", check_id


def test_config_error_names_the_line(new_project: Project) -> None:
    project = new_project()
    (project / "dexkit.yaml").write_text("issuer: http://dex.example.com\n")
    result = run(context(project), "local.config")
    assert result.status == "fail"
    assert "dexkit.yaml:1" in result.message and "https" in result.message


def test_config_warnings_are_warnings(new_project: Project) -> None:
    result = run(context(new_project(dex={"service": {"nodePort": 31000}})), "local.config")
    assert result.status == "warn" and "NodePort 31000" in result.message


def test_render_time_rules_fail_the_config_check(new_project: Project) -> None:
    result = run(context(new_project(dex={"replicas": 2, "storage": {"type": "memory"}})),
                 "local.config")
    assert result.status == "fail" and "replicas" in result.message


def test_missing_files_fail_with_init_hint(new_project: Project) -> None:
    project = new_project()
    (project / "ssl/cert.pem").unlink()
    result = run(context(project), "local.tls-files")
    assert result.status == "fail" and "ssl/cert.pem" in result.message
    assert "dexkit init" in result.hint


def test_a_key_readable_by_others_fails_with_chmod(new_project: Project) -> None:
    project = new_project()
    (project / "ssl/key.pem").chmod(0o644)
    result = run(context(project), "local.tls-files")
    assert result.status == "fail" and "ssl/key.pem (mode 0644)" in result.message
    assert result.hint == "chmod 600 ssl/key.pem"


def test_a_missing_ca_key_is_noted_not_failed(new_project: Project) -> None:
    project = new_project()
    (project / "ssl/ca-key.pem").unlink()
    result = run(context(project), "local.tls-files")
    assert result.status == "ok" and "kept offline" in result.message


def test_key_of_another_certificate_fails(new_project: Project) -> None:
    project = new_project()
    pki.write_key(project / "ssl/key.pem", pki.generate_key("ecdsa-p256"))
    result = run(context(project), "local.key-match")
    assert result.status == "fail" and "is not the key of ssl/cert.pem" in result.message
    assert "certs rotate" in result.hint


def test_certificate_of_another_ca_fails_the_chain(new_project: Project) -> None:
    project = new_project()
    _, _, leaf, key = ca_and_leaf(["dex.example.com"], common_name="Other CA")
    pki.write_cert(project / "ssl/cert.pem", leaf)
    pki.write_key(project / "ssl/key.pem", key)
    result = run(context(project), "local.chain")
    assert result.status == "fail" and "was not issued by ssl/ca.pem" in result.message
    assert "Other CA" in result.message


def test_wrong_host_fails_sans_only(new_project: Project) -> None:
    project = new_project()
    ca = pki.load_cert(project / "ssl/ca.pem")
    leaf, key = issue(ca, pki.load_key(project / "ssl/ca-key.pem"), ["other.example.com"])
    pki.write_cert(project / "ssl/cert.pem", leaf)
    pki.write_key(project / "ssl/key.pem", key)
    ctx = context(project)
    assert run(ctx, "local.chain").status == "ok"
    result = run(ctx, "local.sans")
    assert result.status == "fail"
    assert "does not cover the issuer host 'dex.example.com' (SANs: other.example.com)" in \
        result.message
    assert "tls.hosts" in result.hint and "certs rotate" in result.hint


def test_wildcard_covers_one_label(new_project: Project) -> None:
    project = new_project()
    ca = pki.load_cert(project / "ssl/ca.pem")
    leaf, _ = issue(ca, pki.load_key(project / "ssl/ca-key.pem"), ["*.example.com"])
    pki.write_cert(project / "ssl/cert.pem", leaf)
    assert run(context(project), "local.sans").status == "ok"


def test_expiry_warns_under_30_days_and_fails_when_expired(new_project: Project) -> None:
    project = new_project()
    soon = run(context(project, now=NOW + dt.timedelta(days=350)), "local.expiry")
    assert soon.status == "warn" and "ssl/cert.pem expires in 15 days (2027-06-01)" in soon.message
    assert "dexkit certs rotate" in soon.hint
    gone = run(context(project, now=NOW + dt.timedelta(days=400)), "local.expiry")
    assert gone.status == "fail" and "ssl/cert.pem expired on" in gone.message
    early = run(context(project, now=NOW - dt.timedelta(days=1)), "local.expiry")
    assert early.status == "fail" and "not valid before" in early.message
    assert "clock" in early.hint
    fine = run(context(project), "local.expiry")
    assert fine.status == "ok" and "365 days left" in fine.message


def test_expired_certificate_does_not_fail_the_chain(new_project: Project) -> None:
    project = new_project()
    assert run(context(project, now=NOW + dt.timedelta(days=400)), "local.chain").status == "ok"


# --- kubeconfig users ---------------------------------------------------------------------------


def _kubeconfig(path: Path, users: dict[str, dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
        "users": [{"name": name, "user": user} for name, user in users.items()]}))
    return path


def _dexkit_user(project: Path, issuer: str = ISSUER, client_id: str = "kubernetes",
                 scopes: tuple[str, ...] = ("openid", "email", "groups")) -> dict[str, object]:
    return exec_user(["--issuer", issuer, "--client-id", client_id, "--ca-file",
                      str(project / "ssl/ca.pem"), *[f for s in scopes for f in ("--scope", s)]])


def _kubelogin_user(*args: str) -> dict[str, object]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "kubectl",
                     "args": ["oidc-login", "get-token", f"--oidc-issuer-url={ISSUER}",
                              "--oidc-client-id=kubernetes", *args]}}


def test_no_login_user_is_a_skip(new_project: Project, tmp_path: Path) -> None:
    project = new_project()
    kubeconfig = _kubeconfig(tmp_path / "kc", {"admin": {"token": "x"}})
    result = run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user")
    assert result.status == "skip" and "dexkit kubeconfig" in result.message


def test_user_written_by_dexkit_kubeconfig_passes(new_project: Project, tmp_path: Path) -> None:
    project = new_project()
    kubeconfig = _kubeconfig(tmp_path / "kc", {"me": _dexkit_user(project)})
    result = run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user")
    assert result.status == "ok" and "'me'" in result.message


def test_issuer_with_trailing_slash_in_kubeconfig_fails(new_project: Project,
                                                         tmp_path: Path) -> None:
    project = new_project()
    kubeconfig = _kubeconfig(tmp_path / "kc", {"me": _dexkit_user(project, ISSUER + "/")})
    result = run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user")
    assert result.status == "fail"
    assert "they differ only by a trailing slash" in result.message
    assert "dexkit kubeconfig" in result.hint


def test_other_client_id_and_missing_groups_scope_fail(new_project: Project,
                                                       tmp_path: Path) -> None:
    project = new_project()
    kubeconfig = _kubeconfig(tmp_path / "kc", {
        "me": _dexkit_user(project, client_id="example-app"),
        "kl": _kubelogin_user("--oidc-extra-scope=email")})
    result = run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user")
    assert result.status == "fail"
    assert "'me' (dexkit token) logs in as client 'example-app'" in result.message
    assert "'kl' (kubelogin) does not request the 'groups' scope (scopes: openid email)" in \
        result.message


def test_kubelogin_with_groups_scope_and_our_ca_passes(new_project: Project,
                                                       tmp_path: Path) -> None:
    project = new_project()
    kubeconfig = _kubeconfig(tmp_path / "kc", {"kl": _kubelogin_user(
        "--oidc-extra-scope=groups", f"--certificate-authority={project / 'ssl/ca.pem'}")})
    assert run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user").status == "ok"


def test_user_trusting_another_ca_fails(new_project: Project, tmp_path: Path) -> None:
    project = new_project()
    other, _, _, _ = ca_and_leaf(["x"], common_name="Other CA")
    (tmp_path / "other.pem").write_bytes(pki.cert_pem(other))
    user = _kubelogin_user("--oidc-extra-scope=groups",
                           f"--certificate-authority={tmp_path / 'other.pem'}")
    kubeconfig = _kubeconfig(tmp_path / "kc", {"kl": user})
    result = run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user")
    assert result.status == "fail" and "does not hold dexkit's CA" in result.message


def test_kubeconfig_from_the_environment(new_project: Project, tmp_path: Path) -> None:
    project = new_project()
    kubeconfig = _kubeconfig(tmp_path / "kc", {"me": _dexkit_user(project, ISSUER + "/")})
    ctx = context(project, environ={"KUBECONFIG": f"{tmp_path / 'none'}:{kubeconfig}"})
    assert run(ctx, "local.kubeconfig-user").status == "fail"


def test_unregistered_redirect_uri_fails(new_project: Project, tmp_path: Path) -> None:
    project = new_project()
    user = _dexkit_user(project)
    user["exec"]["args"] += ["--listen-port", "9000"]  # type: ignore[index]
    kubeconfig = _kubeconfig(tmp_path / "kc", {"me": user})
    result = run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user")
    assert result.status == "fail"
    assert ("'me' (dexkit token) logs in on http://127.0.0.1:9000/callback, which client "
            "'kubernetes' does not register in redirectURIs") in result.message
    # the password grant needs no redirect URI
    user["exec"]["args"] += ["--grant", "password"]  # type: ignore[index]
    kubeconfig = _kubeconfig(tmp_path / "kc2", {"me": user})
    assert run(context(project, kubeconfig=kubeconfig), "local.kubeconfig-user").status == "ok"
