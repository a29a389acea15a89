"""kuberc's credential plugin policy, read as kubectl reads it (the real kubectl's verdict on
the same files is in tests/e2e/test_robots.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dexkit.kuberc import allows, kuberc_advice, kuberc_path, read_policy

PREFERENCE = "apiVersion: kubectl.config.k8s.io/v1beta1\nkind: Preference\n"


def which(name: str) -> str | None:
    return {"dexkit": "/opt/bin/dexkit", "/opt/bin/dexkit": "/opt/bin/dexkit",
            "kubelogin": "/opt/bin/kubelogin"}.get(name)


def write(tmp_path: Path, body: str) -> dict[str, str]:
    path = tmp_path / "kuberc"
    path.write_text(PREFERENCE + body)
    return {"KUBERC": str(path)}


def test_where_kubectl_looks(tmp_path: Path) -> None:
    assert kuberc_path({}, tmp_path) == tmp_path / ".kube" / "kuberc"
    assert kuberc_path({"KUBERC": "/x/rc"}, tmp_path) == Path("/x/rc")
    assert kuberc_path({"KUBERC": "off"}, tmp_path) is None
    assert read_policy({}, tmp_path) is None  # no file: any plugin runs


@pytest.mark.parametrize(("body", "allowed"), [
    ("", True),
    ("credentialPluginPolicy: AllowAll\n", True),
    ("credentialPluginPolicy: DenyAll\n", False),
    ("credentialPluginPolicy: Allowlist\ncredentialPluginAllowlist:\n- name: kubelogin\n", False),
    ("credentialPluginPolicy: Allowlist\ncredentialPluginAllowlist:\n- name: dexkit\n", True),
    ("credentialPluginPolicy: Allowlist\ncredentialPluginAllowlist:\n- command: /opt/bin/dexkit\n",
     True),
    ("credentialPluginPolicy: Allowlist\n", False),  # kubectl refuses an empty allowlist
    ("credentialPluginPolicy: Sometimes\n", False),
])
def test_the_policy_decides_like_kubectl(tmp_path: Path, body: str, allowed: bool) -> None:
    environ = write(tmp_path, body)
    assert allows(read_policy(environ), "dexkit", which) is allowed
    advice = kuberc_advice("dexkit", environ, which=which)
    assert (advice == []) is allowed
    if advice:
        message, hint = advice[0]
        assert environ["KUBERC"] in message
        assert "{name: dexkit}" in hint and "\n" not in hint


def test_the_advice_names_why(tmp_path: Path) -> None:
    deny = kuberc_advice("dexkit", write(tmp_path, "credentialPluginPolicy: DenyAll\n"),
                         which=which)
    assert "DenyAll, so kubectl will not run 'dexkit token'" in deny[0][0]
    listed = kuberc_advice("dexkit", write(tmp_path, "credentialPluginPolicy: Allowlist\n"
                                                     "credentialPluginAllowlist:\n"
                                                     "- name: kubelogin\n"), which=which)
    assert "(kubelogin), and 'dexkit' (/opt/bin/dexkit) is not one of them" in listed[0][0]
    broken = tmp_path / "broken"
    broken.write_text("credentialPluginPolicy: [")
    unreadable = kuberc_advice("dexkit", {"KUBERC": str(broken)}, which=which)
    assert "kubectl cannot read it" in unreadable[0][0]
