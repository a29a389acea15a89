"""Every scenario, end to end, with its expectations.yaml as the oracle.

Without Dex (these always run):
- every object a scenario renders passes a server-side dry run on the real kube-apiserver;
- the rendered RBAC, applied for real, gives the expected identity exactly the expected rights
  (SubjectAccessReview), and an identity without the expected groups none of them;
- the ldap scenario's searches, built from its dexkit.yaml the way Dex builds them, find the
  expected user and exactly the expected groups in a real slapd, over LDAPS and over StartTLS;
- `dexkit doctor --offline` finds nothing wrong in the local and security checks.

With Dex (``needs_dex``): `dexkit verify` logs in through a real Dex serving the rendered config
and proves, through a real API server started with the rendered flags, the username, the groups
and the rights of expectations.yaml. upstream-oidc federates to a second real Dex.
"""

from __future__ import annotations

import html
import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dexkit.config import LDAPConnector, load_config, validate_values
from dexkit.project import render_config_file
from dexkit.sandbox import controlplane
from dexkit.scenarios import Expectations, get_scenario, list_scenarios
from dexkit.verify import Probe
from tests.e2e.conftest import KUBERNETES_VERSION, peer_unavailable
from tests.e2e.loopback_dex import start_loopback_dex
from tests.e2e.oidc_sandbox import (
    aggregate_cluster_roles,
    kubectl_run,
    oidc_apiserver_options,
    start_stack,
)
from tests.e2e.slapd import LDAPError, Slapd, Tools, find_tools, start_slapd
from tests.ldif import Entry, escape_filter_value, parse_ldif

pytestmark = pytest.mark.e2e

MINOR = ".".join(KUBERNETES_VERSION.lstrip("v").split(".")[:2])
NAMES = [s.name for s in list_scenarios()]
LOGIN = [s.name for s in list_scenarios() if s.expectations().proof == "login"]
CLI = [sys.executable, "-m", "dexkit"]


# --- projects ------------------------------------------------------------------------------------


def _edit(project: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit dexkit.yaml as a user would, keeping dexkit's commented layout."""
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(render_config_file(validate_values(data)))


def _project(dexkit: Any, base: Path, name: str, *, issuer: str | None = None,
             namespace: str | None = None, connector_ca: str | None = None) -> Path:
    """`dexkit init --scenario NAME`, for the sandbox's Kubernetes minor."""
    project = base / name
    args = ["init", "--scenario", name, "--dir", project]
    if issuer is not None:
        args += ["--issuer", issuer]
    result = dexkit(*args)
    assert result.code == 0, result.err

    def adapt(data: dict[str, Any]) -> None:
        data["kubernetesVersion"] = MINOR
        if namespace is not None:
            data["namespace"] = namespace

    _edit(project, adapt)
    for connector in load_config(project).config.connectors:
        root_ca = getattr(connector, "root_ca", None)
        if root_ca and not root_ca.startswith("/"):
            # The scenario's README asks the user to put the connector's CA here.
            (project / root_ca).write_text(connector_ca or (project / "ssl" / "ca.pem").read_text())
    return project


def _render(dexkit: Any, project: Path) -> Path:
    result = dexkit("render", "--dir", project)
    assert result.code == 0, result.err
    return project / "out"


# --- without Dex: dry run, RBAC, doctor ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_rendered_object_passes_a_server_side_dry_run(
        dexkit: Any, tmp_path: Path, control_plane: controlplane.ControlPlane, kubectl: Path,
        name: str) -> None:
    namespace = f"dexkit-scenario-{name}"
    out = _render(dexkit, _project(dexkit, tmp_path, name, namespace=namespace))
    stream = (out / "dex.yaml").read_text()
    kinds = [doc["kind"] for doc in yaml.safe_load_all(stream) if doc]
    assert "Deployment" in kinds and "ClusterRoleBinding" in kinds
    # A dry run persists nothing, so the namespace the objects go into must really exist.
    created = kubectl_run(kubectl, control_plane, "create", "namespace", namespace)
    assert created.returncode == 0, created.stderr
    try:
        result = kubectl_run(kubectl, control_plane, "apply", "--server-side",
                             "--dry-run=server", "--field-manager=dexkit", "-f", "-",
                             stdin=stream)
        assert result.returncode == 0, result.stderr
        applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
        assert len(applied) == len(kinds), result.stdout
    finally:
        kubectl_run(kubectl, control_plane, "delete", "namespace", namespace, "--wait=false")


@pytest.fixture(scope="module")
def aggregated_roles(control_plane: controlplane.ControlPlane, kubectl: Path) -> None:
    aggregate_cluster_roles(kubectl, control_plane)


def _access(kubectl: Path, plane: controlplane.ControlPlane, user: str, groups: list[str],
            probes: list[Probe]) -> list[bool]:
    """SubjectAccessReviews: may ``user`` in ``groups`` do each probe?"""
    reviews = []
    for probe in probes:
        resource, _, group = probe.resource.partition(".")
        attributes = {"verb": probe.verb, "resource": resource, "group": group}
        if probe.namespace:
            attributes["namespace"] = probe.namespace
        reviews.append({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                        "spec": {"user": user, "groups": groups,
                                 "resourceAttributes": attributes}})
    stream = "".join(f"---\n{yaml.safe_dump(r)}" for r in reviews)
    result = kubectl_run(kubectl, plane, "create", "-f", "-", "-o", "json", stdin=stream)
    assert result.returncode == 0, result.stderr
    items, text, decoder = [], result.stdout.strip(), json.JSONDecoder()
    while text:
        item, end = decoder.raw_decode(text)
        items.append(item)
        text = text[end:].strip()
    assert len(items) == len(probes)
    return [bool(item["status"].get("allowed")) for item in items]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.usefixtures("aggregated_roles")
def test_rendered_rbac_gives_the_expected_identity_exactly_its_rights(
        dexkit: Any, tmp_path: Path, control_plane: controlplane.ControlPlane, kubectl: Path,
        name: str) -> None:
    expected = get_scenario(name).expectations()
    out = _render(dexkit, _project(dexkit, tmp_path, name))
    bindings = sorted((out / "rbac").glob("*.yaml"))
    assert bindings, f"{name} renders no RBAC, so its user could do nothing"
    applied = kubectl_run(kubectl, control_plane, "apply", "--server-side",
                          "--field-manager=dexkit", "-f", str(out / "rbac"))
    assert applied.returncode == 0, applied.stderr
    try:
        can = [Probe.parse(p) for p in expected.can]
        cannot = [Probe.parse(p, expect_allowed=False) for p in expected.cannot]
        # The API server adds system:authenticated to every authenticated user.
        groups = [*expected.api_server.groups, "system:authenticated"]
        user = expected.api_server.username
        assert _access(kubectl, control_plane, user, groups, can) == [True] * len(can)
        assert _access(kubectl, control_plane, user, groups, cannot) == [False] * len(cannot)
        # The rights come from the groups: the same user without them gets none of it.
        bare = _access(kubectl, control_plane, user, ["system:authenticated"], can)
        assert bare == [False] * len(can)
    finally:
        kubectl_run(kubectl, control_plane, "delete", "-f", str(out / "rbac"),
                    "--ignore-not-found")


@pytest.mark.parametrize("name", NAMES)
def test_api_server_takes_the_rendered_oidc_flags(
        dexkit: Any, tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries,
        name: str) -> None:
    """A real kube-apiserver starts with the scenario's rendered --oidc-* flags and its OIDC
    authenticator goes for the issuer's discovery document. (Nothing answers there: the
    logins through a real Dex are the needs_dex tests below.)"""
    (port,) = controlplane.free_ports(1)
    project = _project(dexkit, tmp_path, name, issuer=f"https://127.0.0.1:{port}")
    config = load_config(project).config
    plane = controlplane.start_control_plane(
        tmp_path / "sandbox", control_plane_binaries,
        oidc_apiserver_options(config, project, tmp_path / "sandbox", KUBERNETES_VERSION))
    try:
        argv = " ".join(plane.processes[-1].argv)
        assert f"--oidc-issuer-url={config.issuer}" in argv
        assert f"--oidc-groups-prefix={config.api_server.groups_prefix}" in argv
        context = ssl.create_default_context(cafile=str(plane.layout.ca))
        with httpx.Client(verify=context, timeout=10) as client:
            answer = client.get(f"{plane.apiserver_url}/api",
                                headers={"Authorization": "Bearer not.a.token"})
        assert answer.status_code == 401
        discovery = f"{config.issuer}/.well-known/openid-configuration"
        log = plane.layout.log("kube-apiserver")
        deadline = time.monotonic() + 15
        while discovery not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert discovery in log.read_text(), "the OIDC authenticator never tried the issuer"
    finally:
        plane.stop()


@pytest.mark.parametrize("name", NAMES)
def test_doctor_offline_finds_nothing_wrong_locally(dexkit: Any, tmp_path: Path,
                                                    name: str) -> None:
    """doctor --offline on a fresh project: the local and security checks pass. (The network
    checks need a running Dex at the issuer, which these projects do not have.)"""
    project = _project(dexkit, tmp_path, name)
    result = dexkit("doctor", "--dir", project, "--offline", "--output", "json")
    assert result.code in (0, 1), result.err
    report = json.loads(result.out)
    local = [r for r in report["results"] if r["group"] in ("local", "security")]
    assert any(r["id"] == "local.config" and r["status"] == "ok" for r in local)
    bad = [f"{r['id']}: {r['status']}: {r['message']}" for r in local
           if r["status"] in ("fail", "warn")]
    if name == "kind-ci":
        # Dex v2.45.1 lists the token-exchange connector on its login page (only 2.46+ takes
        # a connector's grantTypes): a warning that holds, and the only one.
        assert [b.split(":")[0] for b in bad] == ["local.robots"], bad
        assert "login page" in bad[0], bad
        return
    assert bad == []


# --- the ldap scenario against a real slapd ------------------------------------------------------


@pytest.fixture(scope="session")
def ldap_tools() -> Tools:
    found = find_tools()
    if isinstance(found, str):
        peer_unavailable(found)
    assert isinstance(found, Tools)
    return found


@pytest.fixture(scope="module")
def slapd(ldap_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A real slapd holding the ldap scenario's directory.ldif (with generated passwords)."""
    scenario = get_scenario("ldap")
    config = validate_values(scenario.config_data())
    conn = next(c for c in config.connectors if isinstance(c, LDAPConnector))
    assert conn.bind_dn is not None
    entries = parse_ldif((scenario.dir / "directory.ldif").read_text())
    server = start_slapd(tmp_path_factory.mktemp("slapd"), ldap_tools,
                         suffix="dc=example,dc=org", entries=entries, reader_dn=conn.bind_dn)
    try:
        yield server
    finally:
        server.stop()


def _ldap_connector() -> tuple[LDAPConnector, Expectations, str]:
    scenario = get_scenario("ldap")
    config = validate_values(scenario.config_data())
    conn = next(c for c in config.connectors if isinstance(c, LDAPConnector))
    return conn, scenario.expectations(), config.api_server.groups_prefix


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_ldap_scenario_searches_find_the_user_and_exactly_its_groups(
        slapd: Slapd, starttls: bool) -> None:
    """Dex's LDAP login, step by step, with the scenario's own settings: bind as the service
    account, find the user, bind as the user, find the user's groups."""
    conn, expected, prefix = _ldap_connector()
    assert conn.bind_dn is not None
    bind = {"bind_dn": conn.bind_dn, "password": slapd.passwords[conn.bind_dn],
            "starttls": starttls}
    search = conn.user_search
    login = expected.login.user
    attrs = tuple(a for a in (search.id_attr, search.email_attr, search.name_attr,
                              search.preferred_username_attr) if a and a != "DN")
    users = slapd.search(base=search.base_dn, attrs=attrs, **bind,
                         filter=f"(&{search.filter}({search.username}="
                                f"{escape_filter_value(login)}))")
    assert len(users) == 1, f"the user search must find exactly one entry, found {users}"
    user: Entry = users[0]
    assert user.first(search.email_attr) == expected.api_server.username
    # The user's password binds (Dex's password check), a wrong one does not.
    assert slapd.search(base=user.dn, scope="base", filter="(objectClass=*)", bind_dn=user.dn,
                        password=slapd.passwords[user.dn], starttls=starttls)
    with pytest.raises(LDAPError) as refused:
        slapd.search(base=user.dn, scope="base", filter="(objectClass=*)", bind_dn=user.dn,
                     password="not-the-password", starttls=starttls)
    assert refused.value.code == 49  # invalidCredentials
    groups: list[str] = []
    assert conn.group_search is not None
    gs = conn.group_search
    for matcher in gs.user_matchers:
        values = [user.dn] if matcher.user_attr.upper() == "DN" else user.get(matcher.user_attr)
        for value in values:
            found = slapd.search(base=gs.base_dn, attrs=(gs.name_attr,), **bind,
                                 filter=f"(&{gs.filter}({matcher.group_attr}="
                                        f"{escape_filter_value(value)}))")
            groups += [name for entry in found for name in entry.get(gs.name_attr)]
    assert sorted(prefix + g for g in groups) == sorted(expected.api_server.groups)


def test_slapd_hides_the_directory_from_anonymous_searches(slapd: Slapd) -> None:
    """Why the scenario needs its bind account: anonymous searches find nobody."""
    conn, _, _ = _ldap_connector()
    assert slapd.search(base=conn.user_search.base_dn, filter="(objectClass=*)") == []


# --- with Dex: `dexkit verify` with the expectations as the oracle -------------------------------


def _start(tmp_path: Path, binaries: controlplane.ControlPlaneBinaries, kubectl: Path,
           project: Path, dex: Path, env: dict[str, str] | None = None,
           connector_cas: dict[str, Path] | None = None,
           login: tuple[str, str] | None = None) -> controlplane.ControlPlane:
    """`dexkit sandbox up --storage memory` for the project (its rendered flags, Dex started
    first, ready once a login is accepted), then its rendered RBAC applied. What a scenario
    proves is its connector and expectations; Dex's kubernetes storage has tests of its own
    (test_sandbox_dex.py), and memory storage saves the API server's 10 s discovery retry."""
    running = start_stack(project, binaries, dex, KUBERNETES_VERSION, storage="memory",
                          env=env, connector_cas=connector_cas, login=login,
                          sandbox=tmp_path / "sandbox")
    plane = running.plane
    try:
        aggregate_cluster_roles(kubectl, plane)
        applied = kubectl_run(kubectl, plane, "apply", "--server-side", "-f",
                              str(project / "out" / "rbac"))
        assert applied.returncode == 0, applied.stderr
    except BaseException:
        plane.stop()
        raise
    return plane


def _password_login_cases() -> list[Any]:
    cases = []
    for name in LOGIN:
        if get_scenario(name).expectations().login.grant != "password":
            continue
        if name == "ldap":
            cases += [pytest.param(name, False, id="ldap-ldaps"),
                      pytest.param(name, True, id="ldap-starttls")]
        else:
            cases.append(pytest.param(name, False, id=name))
    return cases


@pytest.mark.needs_dex
@pytest.mark.parametrize(("name", "starttls"), _password_login_cases())
def test_password_login_meets_the_expectations(
        dexkit: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dex_binary: Path,
        control_plane_binaries: controlplane.ControlPlaneBinaries, kubectl: Path,
        request: pytest.FixtureRequest, name: str, starttls: bool) -> None:
    expected = get_scenario(name).expectations()
    (port,) = controlplane.free_ports(1)
    env: dict[str, str] = {}
    cas: dict[str, Path] = {}
    if name == "ldap":
        server: Slapd = request.getfixturevalue("slapd")
        project = _project(dexkit, tmp_path, name, issuer=f"https://127.0.0.1:{port}",
                           connector_ca=server.ca_pem)
        conn, _, _ = _ldap_connector()
        assert conn.bind_dn is not None

        def point_at_slapd(data: dict[str, Any]) -> None:
            ldap = data["connectors"][0]
            ldap["host"] = f"127.0.0.1:{server.ldap_port if starttls else server.ldaps_port}"
            ldap["startTLS"] = starttls

        _edit(project, point_at_slapd)
        env["LDAP_BIND_PASSWORD"] = server.passwords[conn.bind_dn]
        cas[conn.id] = project / str(conn.root_ca)
        user_dn = next(dn for dn in server.passwords
                       if dn.startswith(f"uid={expected.login.user},"))
        monkeypatch.setenv("DEXKIT_PASSWORD", server.passwords[user_dn])
        login = (expected.login.user, server.passwords[user_dn])
    else:
        # Static users: the password init generated is in .dexkit/passwords/, where verify
        # finds it.
        project = _project(dexkit, tmp_path, name, issuer=f"https://127.0.0.1:{port}")
        _edit(project, _exchange_issuers_unreachable)
        monkeypatch.delenv("DEXKIT_PASSWORD", raising=False)
        login = None
    _render(dexkit, project)
    plane = _start(tmp_path, control_plane_binaries, kubectl, project, dex_binary, env, cas,
                   login)
    try:
        result = dexkit("verify", "--dir", project, "--kubeconfig", plane.kubeconfig,
                        *expected.verify_args())
        assert result.code == 0, f"{result.out}\n{result.err}"
        assert "verified:" in result.err
    finally:
        plane.stop()


def _exchange_issuers_unreachable(data: dict[str, Any]) -> None:
    """kind-ci's token-exchange connector names GitHub's issuer, which nothing here may ask
    (traffic stays on this machine): a local port where nothing listens takes its place. Dex
    then serves the static users with that connector unopened (continue_on_connector_failure,
    on by default), as it does where GitHub cannot be reached; the login proves it."""
    for connector in data.get("connectors") or []:
        if connector.get("tokenExchange"):
            (closed,) = controlplane.free_ports(1)
            connector["issuer"] = f"https://127.0.0.1:{closed}"


UPSTREAM_CLIENT = "dexkit-downstream"


def _upstream_dex(directory: Path, dex: Path, *, user: str, groups: list[str],
                  redirect_uri: str) -> tuple[Any, str, str, str]:
    """A second real Dex as the upstream OIDC provider; returns (process, issuer, CA PEM,
    password of ``user``)."""
    upstream = start_loopback_dex(
        directory, dex, name="upstream-dex", email=user, username=user.partition("@")[0],
        groups=groups, clients=[{"id": UPSTREAM_CLIENT, "name": "dexkit downstream",
                                 "secret": "upstream-test-secret",
                                 "redirectURIs": [redirect_uri]}])
    return upstream.process, upstream.issuer, upstream.ca_pem, upstream.password


def _drive_browser(url: str, ca_files: list[Path], user: str, password: str) -> None:
    """What a person does in the browser: follow the redirects to the upstream's login form,
    submit it, and follow the redirects back through Dex to dexkit's loopback listener."""
    context = ssl.create_default_context()
    for ca in ca_files:
        context.load_verify_locations(cafile=str(ca))
    with httpx.Client(verify=context, follow_redirects=True, timeout=30) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text[:500]
        assert 'name="password"' in page.text, f"no login form at {page.url}"
        action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
        target = page.url.join(html.unescape(action.group(1))) if action and action.group(1) \
            else page.url
        done = browser.post(target, data={"login": user, "password": password})
        assert done.status_code == 200, f"{done.url}: {done.text[:500]}"
        assert done.url.host in ("127.0.0.1", "localhost"), done.url


@pytest.mark.needs_dex
def test_upstream_oidc_login_meets_the_expectations(
        dexkit: Any, tmp_path: Path, dex_binary: Path,
        control_plane_binaries: controlplane.ControlPlaneBinaries, kubectl: Path) -> None:
    name = "upstream-oidc"
    scenario = get_scenario(name)
    expected = scenario.expectations()
    (port,) = controlplane.free_ports(1)
    project = _project(dexkit, tmp_path, name, issuer=f"https://127.0.0.1:{port}")
    config = load_config(project).config
    prefix = config.api_server.groups_prefix
    upstream_dir = tmp_path / "upstream"
    upstream_dir.mkdir()
    upstream, upstream_issuer, upstream_ca, password = _upstream_dex(
        upstream_dir, dex_binary, user=expected.login.user,
        groups=[g.removeprefix(prefix) for g in expected.api_server.groups],
        redirect_uri=f"{config.issuer}/callback")
    try:
        (project / "upstream-ca.pem").write_text(upstream_ca)

        def point_at_upstream(data: dict[str, Any]) -> None:
            data["connectors"][0]["issuer"] = upstream_issuer
            data["connectors"][0]["rootCA"] = "upstream-ca.pem"

        _edit(project, point_at_upstream)
        _render(dexkit, project)
        config = load_config(project).config
        plane = _start(tmp_path, control_plane_binaries, kubectl, project, dex_binary,
                       env={"UPSTREAM_CLIENT_ID": UPSTREAM_CLIENT,
                            "UPSTREAM_CLIENT_SECRET": "upstream-test-secret"},
                       connector_cas={config.connectors[0].id: project / "upstream-ca.pem"})
        try:
            verify = subprocess.Popen(
                [*CLI, "verify", "--dir", str(project), "--kubeconfig", str(plane.kubeconfig),
                 "--no-browser", *expected.verify_args()],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
            try:
                assert verify.stderr is not None
                url, seen = None, []
                deadline = time.monotonic() + 60
                while url is None and time.monotonic() < deadline:
                    line = verify.stderr.readline()
                    if not line:
                        break
                    seen.append(line)
                    if line.startswith("Log in at: "):
                        url = line.removeprefix("Log in at: ").strip()
                assert url, f"dexkit verify printed no login URL: {''.join(seen)}"
                _drive_browser(url, [project / "ssl" / "ca.pem", project / "upstream-ca.pem"],
                               expected.login.user, password)
                out, err = verify.communicate(timeout=120)
            finally:
                if verify.poll() is None:
                    verify.kill()
            assert verify.returncode == 0, f"{out}\n{''.join(seen)}{err}"
            assert "verified:" in err
        finally:
            plane.stop()
    finally:
        upstream.stop()
