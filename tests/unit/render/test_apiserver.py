"""Flags, AuthenticationConfiguration, mounts and the static-pod patch."""

from __future__ import annotations

import difflib
from typing import Any

import pytest
import yaml

from dexkit.errors import ConfigError, DexkitError, TLSError, UsageError
from dexkit.render.apiserver import (
    EMAIL_VERIFIED_RULE,
    apiserver_flags,
    identity_notes,
    patch_static_pod,
    render_authentication_config,
    render_flags_file,
    render_volume_snippet,
)
from tests.unit.render.helpers import FIXTURES, golden_ca, make_config

KUBEADM = ["kube-apiserver-1.30.yaml", "kube-apiserver-1.34.yaml",
           "kube-apiserver-1.36-hand-oidc.yaml"]
MODES = ["flags", "authentication-config"]


def _flags(data: dict[str, Any] | None = None) -> list[str]:
    return [str(f) for f in apiserver_flags(make_config(data))]


def _authn(data: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        render_authentication_config(make_config(data), golden_ca()))
    return loaded


# --- flags ---------------------------------------------------------------------------------------


def test_flags_are_the_guides_plus_explicit_prefixes() -> None:
    assert _flags() == [
        "--oidc-issuer-url=https://dex.example.com:32000",
        "--oidc-client-id=kubernetes",
        "--oidc-ca-file=/etc/ssl/certs/openid-ca.pem",
        "--oidc-username-claim=email",
        "--oidc-username-prefix=-",
        "--oidc-groups-claim=groups",
        "--oidc-groups-prefix=oidc:",
        "--oidc-signing-algs=RS256",
    ]


def test_non_email_claims_get_the_issuer_prefix_spelled_out() -> None:
    flags = _flags({"apiServer": {"usernameClaim": "sub"}})
    assert "--oidc-username-prefix=https://dex.example.com:32000#" in flags
    (note, _) = identity_notes(make_config({"apiServer": {"usernameClaim": "sub"}}))
    assert "https://dex.example.com:32000#<sub>" in note
    assert "--oidc-username-prefix=-" in _flags({"apiServer": {"usernameClaim": "sub",
                                                               "usernamePrefix": "-"}})
    assert "--oidc-username-prefix=dex:" in _flags({"apiServer": {"usernamePrefix": "dex:"}})


def test_required_claims_and_algorithms() -> None:
    flags = _flags({"apiServer": {"requiredClaims": {"hd": "example.com", "aud2": "x"},
                                  "signingAlgs": ["RS256", "ES256"]}})
    assert "--oidc-required-claim=aud2=x,hd=example.com" in flags
    assert "--oidc-signing-algs=RS256,ES256" in flags
    # Refused when dexkit.yaml is read, with its file and line (not first at render time).
    with pytest.raises(ConfigError, match=r"^test\.yaml:\d+: apiServer\.requiredClaims: 'a: b,c' "
                       "cannot be passed as the --oidc-required-claim flag"):
        _flags({"apiServer": {"requiredClaims": {"a": "b,c"}}})


def test_authentication_config_mode_has_one_flag_and_no_oidc_flag() -> None:
    assert _flags({"apiServer": {"mode": "authentication-config"}}) == [
        "--authentication-config=/etc/kubernetes/dexkit/authentication-config.yaml"]
    text = render_flags_file(make_config({"apiServer": {"mode": "authentication-config"}}))
    assert "--oidc" not in "".join(line for line in text.splitlines()
                                   if not line.startswith("#"))


def test_flags_file_explains_and_lists() -> None:
    text = render_flags_file(make_config({"apiServer": {"usernameClaim": "sub"}}))
    lines = text.splitlines()
    assert all(line.startswith(("#", "--")) for line in lines)
    assert any("'https://dex.example.com:32000#<sub>'" in line for line in lines)
    assert [line for line in lines if line.startswith("--")] == _flags(
        {"apiServer": {"usernameClaim": "sub"}})


# --- AuthenticationConfiguration -----------------------------------------------------------------


@pytest.mark.parametrize(("minor", "version"), [(30, "v1beta1"), (33, "v1beta1"), (34, "v1"),
                                                (37, "v1")])
def test_authentication_config_version(minor: int, version: str) -> None:
    authn = _authn({"kubernetesVersion": f"1.{minor}"})
    assert authn["apiVersion"] == f"apiserver.config.k8s.io/{version}"
    assert authn["kind"] == "AuthenticationConfiguration"


def test_authentication_config_content() -> None:
    (jwt,) = _authn()["jwt"]
    assert jwt["issuer"]["url"] == "https://dex.example.com:32000"
    assert jwt["issuer"]["audiences"] == ["kubernetes"]
    assert jwt["issuer"]["certificateAuthority"] == golden_ca()
    assert jwt["claimMappings"] == {"username": {"claim": "email", "prefix": ""},
                                    "groups": {"claim": "groups", "prefix": "oidc:"}}
    assert jwt["claimValidationRules"] == [{
        "expression": EMAIL_VERIFIED_RULE,
        "message": "the email address in the token is not verified"}]


def test_authentication_config_for_a_sub_claim() -> None:
    (jwt,) = _authn({"apiServer": {"usernameClaim": "sub", "requiredClaims": {"hd": "x"}}})["jwt"]
    assert jwt["claimMappings"]["username"] == {
        "claim": "sub", "prefix": "https://dex.example.com:32000#"}
    assert jwt["claimValidationRules"] == [{"claim": "hd", "requiredValue": "x"}]


def test_authentication_config_needs_a_pem_ca() -> None:
    with pytest.raises(TLSError, match="not a PEM certificate"):
        render_authentication_config(make_config(), "not a certificate")


# --- the snippet ---------------------------------------------------------------------------------


def test_snippet_mounts_the_ca_file_read_only() -> None:
    snippet = yaml.safe_load(render_volume_snippet(make_config()))
    assert snippet["volumeMounts"] == [{"mountPath": "/etc/ssl/certs/openid-ca.pem",
                                        "name": "dexkit-oidc-ca", "readOnly": True}]
    assert snippet["volumes"] == [{"hostPath": {"path": "/etc/ssl/certs/openid-ca.pem",
                                                "type": "File"}, "name": "dexkit-oidc-ca"}]


def test_snippet_in_authentication_config_mode_mounts_the_directory() -> None:
    snippet = yaml.safe_load(render_volume_snippet(
        make_config({"apiServer": {"mode": "authentication-config"}})))
    assert snippet["volumes"][0]["hostPath"] == {"path": "/etc/kubernetes/dexkit",
                                                 "type": "DirectoryOrCreate"}
    with pytest.raises(ConfigError, match="directory of its own"):
        render_volume_snippet(make_config({"apiServer": {
            "mode": "authentication-config", "authenticationConfigFile": "/etc/authn.yaml"}}))


# --- the static-pod patch ------------------------------------------------------------------------


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _owned(line: str) -> bool:
    item = line.strip().removeprefix("- ").strip('"')
    return item.startswith(("--oidc-", "--authentication-config"))


@pytest.mark.parametrize("fixture", KUBEADM)
@pytest.mark.parametrize("mode", MODES)
def test_patch_is_idempotent(fixture: str, mode: str) -> None:
    config = make_config({"apiServer": {"mode": mode}})
    first = patch_static_pod(_fixture(fixture), config)
    assert first.changed
    second = patch_static_pod(first.text, config)
    assert not second.changed and second.text == first.text and second.diff == ""


@pytest.mark.parametrize("fixture", KUBEADM)
@pytest.mark.parametrize("mode", MODES)
def test_patch_touches_only_dexkits_lines(fixture: str, mode: str) -> None:
    """Only dexkit's flag lines are removed or replaced; only dexkit's lines are added."""
    before = _fixture(fixture)
    after = patch_static_pod(before, make_config({"apiServer": {"mode": mode}})).text
    old, new = before.splitlines(), after.splitlines()
    added: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
        if tag in ("replace", "delete"):
            assert all(_owned(line) for line in old[i1:i2]), old[i1:i2]
        if tag in ("replace", "insert"):
            added += new[j1:j2]
    volume_lines = ("mountPath:", "name: dexkit-", "readOnly: true", "hostPath:", "path:",
                    "type:")
    for line in added:
        assert _owned(line) or line.strip().lstrip("- ").startswith(volume_lines), line


@pytest.mark.parametrize("fixture", KUBEADM)
def test_patched_manifest_keeps_everything_else(fixture: str) -> None:
    before = yaml.safe_load(_fixture(fixture))
    after = yaml.safe_load(patch_static_pod(_fixture(fixture), make_config()).text)
    old_c, new_c = before["spec"]["containers"][0], after["spec"]["containers"][0]
    assert [f for f in new_c["command"] if not _owned(f)] == \
        [f for f in old_c["command"] if not _owned(f)]
    assert [v for v in after["spec"]["volumes"] if v["name"] != "dexkit-oidc-ca"] == \
        before["spec"]["volumes"]
    assert [m for m in new_c["volumeMounts"] if m["name"] != "dexkit-oidc-ca"] == \
        old_c["volumeMounts"]
    for key in set(before) | set(after):
        if key != "spec":
            assert before.get(key) == after.get(key)
    ours = [f for f in new_c["command"] if _owned(f)]
    assert sorted(ours) == sorted(_flags())


def test_stale_oidc_flags_are_replaced_not_duplicated() -> None:
    result = patch_static_pod(_fixture("kube-apiserver-1.36-hand-oidc.yaml"), make_config())
    command = yaml.safe_load(result.text)["spec"]["containers"][0]["command"]
    issuers = [f for f in command if f.startswith("--oidc-issuer-url")]
    assert issuers == ["--oidc-issuer-url=https://dex.example.com:32000"]
    assert ("set --oidc-issuer-url=https://dex.example.com:32000 "
            "(was --oidc-issuer-url=https://dex.example.com:32000/)") in result.changes


def test_switching_modes_removes_the_other_mode() -> None:
    flags_mode = patch_static_pod(_fixture("kube-apiserver-1.30.yaml"), make_config()).text
    authn = patch_static_pod(flags_mode, make_config({"apiServer": {
        "mode": "authentication-config"}}))
    pod = yaml.safe_load(authn.text)
    command = pod["spec"]["containers"][0]["command"]
    assert not [f for f in command if f.startswith("--oidc-")]
    assert "--authentication-config=/etc/kubernetes/dexkit/authentication-config.yaml" in command
    names = [v["name"] for v in pod["spec"]["volumes"]]
    assert "dexkit-oidc-ca" not in names and "dexkit-authn-config" in names
    back = patch_static_pod(authn.text, make_config())
    assert back.text == flags_mode


def test_duplicate_flags_are_collapsed() -> None:
    text = _fixture("kube-apiserver-1.30.yaml").replace(
        "    - --secure-port=6443\n",
        "    - --oidc-client-id=a\n    - --secure-port=6443\n    - --oidc-client-id=b\n")
    command = yaml.safe_load(patch_static_pod(text, make_config()).text)[
        "spec"]["containers"][0]["command"]
    assert [f for f in command if f.startswith("--oidc-client-id")] == [
        "--oidc-client-id=kubernetes"]


def test_the_command_is_read_as_pflag_reads_it() -> None:
    """An item is split on '=' only: '--oidc-issuer-url https://old' is one (unknown) flag and
    takes nothing; a dexkit flag alone takes the next item; a bool flag alone takes nothing."""
    text = _fixture("kube-apiserver-1.30.yaml").replace(
        "    - --secure-port=6443\n",
        "    - --oidc-issuer-url https://old.example.com\n    - --secure-port=6443\n"
        "    - --profiling\n    - --oidc-client-id\n    - old\n    - --oidc_groups_claim=g\n")
    result = patch_static_pod(text, make_config())
    command = yaml.safe_load(result.text)["spec"]["containers"][0]["command"]
    assert "--secure-port=6443" in command and "--profiling" in command and "old" not in command
    assert "removed --oidc-issuer-url https://old.example.com" in result.changes
    assert "set --oidc-client-id=kubernetes (was --oidc-client-id old)" in result.changes
    # '_' is '-' to Kubernetes components (WordSepNormalizeFunc): the same flag, replaced.
    assert "set --oidc-groups-claim=groups (was --oidc_groups_claim=g)" in result.changes
    assert not patch_static_pod(result.text, make_config()).changed


@pytest.mark.parametrize(("items", "line"), [
    ("    - --oidc-issuer-url\n", "the last item"),
    ("    - --oidc-issuer-url\n    - --secure-port=6443\n", "'--secure-port=6443'"),
])
def test_a_dexkit_flag_without_its_value_is_refused(items: str, line: str) -> None:
    text = _fixture("kube-apiserver-1.30.yaml")
    last = [ln for ln in text.splitlines(keepends=True) if ln.startswith("    - --")][-1]
    text = text.replace(last, last + items) if "last" in line else \
        text.replace("    - --secure-port=6443\n", items)
    with pytest.raises(UsageError, match=r"kube-apiserver.yaml:\d+: the flag '--oidc-issuer-url' "
                                         "has no value") as error:
        patch_static_pod(text, make_config())
    assert line in error.value.message


def test_a_mount_someone_else_provides_is_left_alone() -> None:
    text = _fixture("kube-apiserver-1.30.yaml").replace(
        "    volumeMounts:\n",
        "    volumeMounts:\n    - mountPath: /etc/ssl/certs/openid-ca.pem\n"
        "      name: oidc-ca\n      readOnly: true\n")
    result = patch_static_pod(text, make_config())
    assert "dexkit-oidc-ca" not in result.text
    assert all("volume" not in change for change in result.changes)


def test_crlf_and_missing_final_newline_are_kept() -> None:
    text = _fixture("kube-apiserver-1.30.yaml").replace("\n", "\r\n").removesuffix("\r\n")
    result = patch_static_pod(text, make_config())
    assert "\n" not in result.text.replace("\r\n", "")
    assert not result.text.endswith("\n")
    assert not patch_static_pod(result.text, make_config()).changed


MINIMAL = """apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - command:
    - /usr/local/bin/kube-apiserver
    - --secure-port=6443
    name: kube-apiserver
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: certs
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
    name: certs"""


def test_appends_after_the_last_item_of_a_file_without_final_newline() -> None:
    config = make_config()
    result = patch_static_pod(MINIMAL, config)
    pod = yaml.safe_load(result.text)
    assert pod["spec"]["volumes"][-1] == {
        "hostPath": {"path": "/etc/ssl/certs/openid-ca.pem", "type": "File"},
        "name": "dexkit-oidc-ca"}
    assert pod["spec"]["containers"][0]["command"][-1] == "--secure-port=6443"
    assert result.text.endswith("    name: certs\n  - hostPath:\n      path: /etc/ssl/certs/"
                                "openid-ca.pem\n      type: File\n    name: dexkit-oidc-ca\n")
    assert not patch_static_pod(result.text, config).changed


def test_diff_is_unified() -> None:
    result = patch_static_pod(_fixture("kube-apiserver-1.30.yaml"), make_config(),
                              source="/etc/kubernetes/manifests/kube-apiserver.yaml")
    assert result.diff.startswith("--- a//etc/kubernetes/manifests/kube-apiserver.yaml\n+++ b/")
    assert "+    - --oidc-issuer-url=https://dex.example.com:32000\n" in result.diff


BAD_MANIFESTS = {
    "not yaml": ("apiVersion: v1\nkind: Pod\nspec: [unclosed\n", "not valid YAML"),
    "empty": ("", "not a YAML mapping"),
    "a list": ("- a\n- b\n", "not a YAML mapping"),
    "two documents": ("kind: Pod\n---\nkind: Pod\n", "not valid YAML"),
    "a deployment": ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
                     r"Deployment \(apps/v1\), not a v1 Pod"),
    "etcd": ("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command:\n"
             "    - etcd\n    - --data-dir=/var/lib/etcd\n",
             "no container runs the kube-apiserver"),
    "no containers": ("apiVersion: v1\nkind: Pod\nspec: {}\n", "no spec.containers"),
}


@pytest.mark.parametrize("name", sorted(BAD_MANIFESTS))
def test_not_an_apiserver_pod_is_refused(name: str) -> None:
    text, message = BAD_MANIFESTS[name]
    with pytest.raises(UsageError, match=message):
        patch_static_pod(text, make_config())


def test_flow_style_command_is_refused_not_mangled() -> None:
    text = ("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n"
            "    command: [kube-apiserver, --secure-port=6443]\n    volumeMounts: []\n"
            "  volumes: []\n")
    with pytest.raises(DexkitError, match="not a block-style list"):
        patch_static_pod(text, make_config())
