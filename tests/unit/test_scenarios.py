"""scenarios/: each setup is complete and consistent, `dexkit init --scenario` and `dexkit
scenarios` behave, and the kind CI recipe only uses commands and flags that exist.

The end-to-end proofs (server-side dry run, RBAC, slapd, logins through Dex) are in
tests/e2e/test_scenarios.py.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import bcrypt
import jsonschema
import pytest
import typer
import yaml

from dexkit import cli
from dexkit.config import (
    Config,
    GitHubConnector,
    LDAPConnector,
    OIDCConnector,
    load_config,
    validate_values,
)
from dexkit.errors import ConfigError, UsageError
from dexkit.project import complete_static_users, password_file
from dexkit.render.apiserver import apiserver_flags
from dexkit.render.bundle import KIND_CONFIG, KIND_HOSTS, render_bundle
from dexkit.render.dex import render_dex_config, render_manifests
from dexkit.render.kind import KIND_API_VERSION, KUBEADM_PATCHES_DIR
from dexkit.resources import scenarios_dir
from dexkit.scenarios import (
    FILES,
    Expectations,
    Scenario,
    get_scenario,
    list_scenarios,
    load_expectations,
)
from dexkit.verify import Probe
from tests.conftest import snapshot
from tests.ldif import Entry, in_subtree, parse_ldif
from tests.unit.kind_v1alpha4 import CLUSTER_SCHEMA, WILDCARD, kind_rule_errors

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "kind-e2e.yml"
REQUIRED = ("static-users", "ldap", "upstream-oidc", "github", "kind-ci")
SCENARIOS = list_scenarios()
NAMES = [s.name for s in SCENARIOS]
# Flags of commands the workflow uses, as their issues specify them: the check for a command
# that is not registered yet (and the floor for one that is).
ISSUE_FLAGS = {
    "deploy": ("issue 5", {"--dir", "--kubeconfig", "--context", "--dry-run", "--wait",
                           "--no-wait", "--timeout", "--force-conflicts"}),
    "doctor": ("issue 7", {"--dir", "--context", "--offline", "--login", "--output"}),
}


def _config(scenario: Scenario, tmp_path: Path) -> Config:
    """The scenario's config as `dexkit init --scenario` completes it (hashes generated)."""
    data = scenario.config_data()
    data["staticUsers"], _ = complete_static_users(data.get("staticUsers") or [], tmp_path)
    return validate_values(data)


# --- the scenario directories --------------------------------------------------------------------


def test_the_required_scenarios_exist_and_nothing_else_hides_there() -> None:
    assert set(REQUIRED) <= set(NAMES)
    # A directory without a dexkit.yaml would silently not be listed.
    dirs = sorted(p.name for p in scenarios_dir().iterdir() if p.is_dir())
    assert dirs == NAMES
    assert scenarios_dir() == ROOT / "scenarios"  # a checkout uses its own data


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_has_its_three_files_and_a_one_line_summary(name: str) -> None:
    scenario = get_scenario(name)
    for file in FILES:
        assert (scenario.dir / file).is_file(), f"{name} lacks {file}"
    assert scenario.summary and "\n" not in scenario.summary
    assert len(f"{name}  {scenario.summary}") <= 130
    readme = scenario.readme.read_text()
    assert "## How it is proven" in readme or "## What is proven" in readme


@pytest.mark.parametrize("name", NAMES)
def test_no_scenario_ships_a_password_or_a_hash(name: str) -> None:
    scenario = get_scenario(name)
    data = scenario.config_data()
    for user in data.get("staticUsers") or []:
        assert "hash" not in user, f"{name} ships a hash for {user.get('email')}"
    for path in scenario.dir.iterdir():
        text = path.read_text()
        assert not re.search(r"\$2[aby]\$\d\d\$", text), f"{path} contains a bcrypt hash"
        assert not re.search(r"(?im)^\s*(userPassword|password|bindPW|clientSecret)\s*:", text), \
            f"{path} contains a credential"


@pytest.mark.parametrize("name", NAMES)
def test_scenario_config_validates_and_renders(name: str, tmp_path: Path) -> None:
    config = _config(get_scenario(name), tmp_path)
    assert config.warnings() == []
    pems = {c.id: "CA" for c in config.connectors if getattr(c, "root_ca", None)}
    bundle = render_bundle(config, ca_pem=None, project_dir="/p", out_dir="/p/out",
                           connector_ca_pems=pems)
    assert "dex.yaml" in bundle and KIND_CONFIG in bundle
    # Every rbac entry becomes a binding the API server will match (groups prefix applied).
    rbac = [m for m in render_manifests(config, pems) if m.path.startswith("rbac/")]
    assert len(rbac) == len(config.rbac)


@pytest.mark.parametrize("name", NAMES)
def test_expectations_parse_and_agree_with_the_config(name: str, tmp_path: Path) -> None:
    scenario = get_scenario(name)
    config = _config(scenario, tmp_path)
    expected = scenario.expectations()
    api = config.api_server
    assert expected.api_server.username.startswith(config.effective_username_prefix)
    assert expected.api_server.groups, "a scenario should prove its groups reach the API server"
    for group in expected.api_server.groups:
        assert group.startswith(api.groups_prefix), \
            f"{group} lacks the groups prefix '{api.groups_prefix}'"
    for probe in expected.can:
        Probe.parse(probe)
    for probe in expected.cannot:
        Probe.parse(probe, expect_allowed=False)
    assert expected.can and expected.cannot
    if expected.login.grant == "password":
        assert config.password_connector is not None, "Dex offers no password grant here"
    bound = {b.group for b in config.rbac if b.group is not None}
    raw_groups = {g.removeprefix(api.groups_prefix) for g in expected.api_server.groups}
    assert bound & raw_groups, "the rights come from a binding of one of the expected groups"


@pytest.mark.parametrize(("text", "problem"), [
    ("proof: offline\nlogin: {grant: password, user: a}\napiServer: {username: a}\n",
     "offlineReason"),
    ("proof: login\nlogin: {grant: pasword, user: a}\napiServer: {username: a}\n",
     "grant"),
    ("proof: login\nlogin: {grant: password, user: a}\napiServer: {username: a}\n"
     "can: [list]\n", "VERB RESOURCE"),
    ("proof: login\nlogin: {grant: password, user: a}\napiServer: {username: a, group: [x]}\n",
     "group"),
    ("proof: login\napiServer: {username: a}\n", "login"),
], ids=["offline-without-reason", "unknown-grant", "bad-probe", "unknown-key", "missing-login"])
def test_broken_expectations_are_refused_with_the_reason(tmp_path: Path, text: str,
                                                         problem: str) -> None:
    path = tmp_path / "expectations.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as refused:
        load_expectations(path)
    assert str(path) in refused.value.message


def test_a_readme_without_its_title_line_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "odd").mkdir()
    for name in FILES:
        (tmp_path / "odd" / name).write_text("# odd\n")
    (tmp_path / "not-a-scenario").mkdir()  # no dexkit.yaml: not listed
    assert [s.name for s in list_scenarios(tmp_path)] == ["odd"]
    with pytest.raises(ConfigError, match="first line must be '# odd: <summary>'"):
        _ = get_scenario("odd", tmp_path).summary


def test_only_github_is_proven_offline_and_says_why() -> None:
    proofs = {s.name: s.expectations() for s in SCENARIOS}
    assert [n for n, e in proofs.items() if e.proof == "offline"] == ["github"]
    reason = proofs["github"].offline_reason or ""
    assert "github.com" in reason and "browser" in reason


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if get_scenario(n).config_data().get("staticUsers")])
def test_static_user_expectations_match_the_static_user(name: str, tmp_path: Path) -> None:
    scenario = get_scenario(name)
    config = _config(scenario, tmp_path)
    expected = scenario.expectations()
    user = next((u for u in config.static_users if u.email == expected.login.user), None)
    assert user is not None, f"{expected.login.user} is not a static user of {name}"
    assert config.api_server.username_claim == "email"
    assert expected.api_server.username == config.effective_username_prefix + user.email
    prefix = config.api_server.groups_prefix
    assert sorted(expected.api_server.groups) == sorted(prefix + g for g in user.groups)


def _dex_user_search(config: Config, entries: list[Entry], login: str) -> tuple[Entry, list[str]]:
    """Dex's LDAP user and group searches, evaluated on the LDIF (equality filters only)."""
    conn = next(c for c in config.connectors if isinstance(c, LDAPConnector))

    def matches(entry: Entry, base: str, flt: str, attr: str, value: str) -> bool:
        match = re.fullmatch(r"\((\w+)=([^()*]+)\)", flt)
        assert match, f"the unit check handles '(attr=value)' filters only, not {flt}"
        return (in_subtree(entry.dn, base) and entry.dn.lower() != base.lower()
                and match.group(2).lower() in {v.lower() for v in entry.get(match.group(1))}
                and value.lower() in {v.lower() for v in entry.get(attr)})

    search = conn.user_search
    users = [e for e in entries if matches(e, search.base_dn, search.filter, search.username,
                                           login)]
    assert len(users) == 1, f"the user search finds {len(users)} entries for {login}"
    groups: list[str] = []
    if conn.group_search is not None:
        gs = conn.group_search
        for matcher in gs.user_matchers:
            for value in users[0].get(matcher.user_attr):
                groups += [g for e in entries
                           if matches(e, gs.base_dn, gs.filter, matcher.group_attr, value)
                           for g in e.get(gs.name_attr)]
    return users[0], groups


def test_ldap_expectations_match_the_directory(tmp_path: Path) -> None:
    scenario = get_scenario("ldap")
    config = _config(scenario, tmp_path)
    expected = scenario.expectations()
    entries = parse_ldif((scenario.dir / "directory.ldif").read_text())
    user, groups = _dex_user_search(config, entries, expected.login.user)
    conn = next(c for c in config.connectors if isinstance(c, LDAPConnector))
    assert expected.api_server.username == user.first(conn.user_search.email_attr)
    prefix = config.api_server.groups_prefix
    assert sorted(expected.api_server.groups) == sorted(prefix + g for g in groups)
    # The directory holds a group the user is not in, so the check can tell a filter that
    # matches every group from one that matches the user's.
    all_groups = [e for e in entries if "groupofnames" in e.object_classes()]
    assert len(all_groups) > len(groups)
    # The bind account the config names is in the directory.
    assert any(e.dn == conn.bind_dn for e in entries)


def test_ldap_scenario_uses_tls_and_prefixes_its_groups(tmp_path: Path) -> None:
    config = _config(get_scenario("ldap"), tmp_path)
    conn = next(c for c in config.connectors if isinstance(c, LDAPConnector))
    assert not conn.insecure_no_ssl
    assert conn.host.endswith(":636") or conn.start_tls
    assert conn.root_ca and not conn.root_ca.startswith("/")
    assert config.api_server.groups_prefix == "ldap:"
    assert config.password_connector == conn.id


def test_upstream_oidc_keeps_groups_and_email_verification(tmp_path: Path) -> None:
    config = _config(get_scenario("upstream-oidc"), tmp_path)
    (conn,) = config.connectors
    assert isinstance(conn, OIDCConnector)
    assert "groups" in conn.scopes and conn.insecure_enable_groups
    assert not conn.insecure_skip_email_verified
    dex = yaml.safe_load(render_dex_config(config))
    rendered = dex["connectors"][0]["config"]
    assert rendered["clientID"] == "$UPSTREAM_CLIENT_ID"
    assert rendered["clientSecret"] == "$UPSTREAM_CLIENT_SECRET"
    assert rendered["redirectURI"] == f"{config.issuer}/callback"


def test_github_is_the_guides_setup(tmp_path: Path) -> None:
    config = _config(get_scenario("github"), tmp_path)
    (conn,) = config.connectors
    assert isinstance(conn, GitHubConnector)
    assert conn.credentials_secret == "github-client" and conn.orgs
    dex = yaml.safe_load(render_dex_config(config))
    rendered = dex["connectors"][0]["config"]
    assert rendered["clientID"] == "$GITHUB_CLIENT_ID"
    assert rendered["clientSecret"] == "$GITHUB_CLIENT_SECRET"
    assert [o["name"] for o in rendered["orgs"]] == [o.name for o in conn.orgs]
    deployment = next(yaml.safe_load(m.text) for m in render_manifests(config)
                      if m.path.endswith("deployment.yaml"))
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef")
           for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GITHUB_CLIENT_ID"] == {"name": "github-client", "key": "client-id"}
    assert env["GITHUB_CLIENT_SECRET"] == {"name": "github-client", "key": "client-secret"}


# --- dexkit init --scenario ----------------------------------------------------------------------


def test_init_scenario_generates_each_password_and_stores_only_its_hash(  # type: ignore[no-untyped-def]
        dexkit, project: Path) -> None:
    result = dexkit("init", "--scenario", "static-users", "--dir", project)
    assert result.code == 0, result.err
    assert "scenario   static-users: " in result.err
    assert str(get_scenario("static-users").readme) in result.err
    config = load_config(project).config
    (user,) = config.static_users
    stored = password_file(project, user.email)
    assert stored.stat().st_mode & 0o777 == 0o600
    password = stored.read_text().strip()
    assert len(password) >= 20
    assert bcrypt.checkpw(password.encode(), user.hash.encode())
    text = (project / "dexkit.yaml").read_text()
    assert password not in text and user.hash in text
    assert config.issuer == "https://127.0.0.1:32000" and config.tls.ips == ["127.0.0.1"]
    assert [(b.group, b.cluster_role) for b in config.rbac] == [
        ("team-a", "view"), ("team-a/admins", "edit")]
    # Running init again (as the guide's workflow does) keeps the project byte for byte.
    before = snapshot(project)
    assert dexkit("init", "--dir", project).code == 0
    assert snapshot(project) == before


def test_two_projects_from_one_scenario_get_different_passwords(  # type: ignore[no-untyped-def]
        dexkit, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert dexkit("init", "--scenario", "kind-ci", "--dir", tmp_path / name).code == 0
    first, second = (password_file(tmp_path / n, "admin@example.com").read_text()
                     for n in ("a", "b"))
    assert first != second


def test_init_scenario_takes_the_issuer_and_names_given(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("init", "--scenario", "ldap", "--dir", project,
                    "--issuer", "https://127.0.0.1:31000", "--host", "dex.internal")
    assert result.code == 0, result.err
    config = load_config(project).config
    assert config.issuer == "https://127.0.0.1:31000"
    assert config.tls.ips == ["127.0.0.1"] and config.tls.hosts == ["dex.internal"]
    assert config.dex.service.node_port == 31000
    assert isinstance(config.connectors[0], LDAPConnector)
    assert not (project / ".dexkit" / "passwords").exists()  # no static users, no passwords


def test_unknown_scenario_is_a_usage_error_that_writes_nothing(  # type: ignore[no-untyped-def]
        dexkit, project: Path) -> None:
    result = dexkit("init", "--scenario", "ldpa", "--dir", project)
    assert result.code == 2
    assert "error: unknown scenario 'ldpa'" in result.err
    assert "did you mean 'ldap'?" in result.err
    for name in REQUIRED:
        assert name in result.err
    assert not project.exists()


def test_a_name_that_is_a_path_is_just_an_unknown_scenario(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("init", "--scenario", "../templates", "--dir", project)
    assert result.code == 2 and "unknown scenario" in result.err
    assert not project.exists()


def test_scenario_on_an_existing_project_is_refused(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    before = snapshot(project)
    result = dexkit("init", "--scenario", "static-users", "--dir", project)
    assert result.code == 2
    assert "already exists; --scenario starts a new project" in result.err
    assert snapshot(project) == before


def test_scenario_and_connector_do_not_combine(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("init", "--scenario", "ldap", "--connector", "github", "--dir", project)
    assert result.code == 2 and "cannot be combined" in result.err
    assert not project.exists()


def test_complete_static_users_keeps_given_hashes_and_reuses_stored_passwords(
        tmp_path: Path) -> None:
    given = {"email": "a@example.com", "username": "a", "userID": "1",
             "hash": "$2y$10$" + "a" * 53}
    stored = password_file(tmp_path, "b@example.com")
    stored.parent.mkdir(parents=True)
    stored.write_text("kept-password\n")
    stored.chmod(0o600)  # a password file others can read is refused (dexkit writes 0600)
    users, passwords = complete_static_users(
        [given, {"email": "b@example.com", "groups": ["g"]}], tmp_path)
    assert users[0] == given
    assert users[1]["username"] == "b" and users[1]["groups"] == ["g"]
    assert users[1]["userID"] == complete_static_users(
        [{"email": "b@example.com"}], tmp_path)[0][0]["userID"]  # stable
    assert bcrypt.checkpw(b"kept-password", users[1]["hash"].encode())
    assert passwords == {"b@example.com": "kept-password"}


def test_a_static_user_email_never_leaves_the_password_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot name a password file"):
        complete_static_users([{"email": "../../escape@example.com"}], tmp_path)
    assert not list(tmp_path.rglob("*"))


# --- dexkit scenarios ----------------------------------------------------------------------------


def test_dexkit_scenarios_lists_one_line_each(dexkit) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("scenarios")
    assert result.code == 0
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for line, scenario in zip(lines, SCENARIOS, strict=True):
        assert line.endswith(scenario.summary)
    assert "dexkit init --scenario NAME" in result.err


def test_dexkit_scenarios_as_json(dexkit) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("scenarios", "--output", "json")
    assert result.code == 0
    listed = json.loads(result.out)
    assert [s["name"] for s in listed] == NAMES
    assert {s["proof"] for s in listed} == {"login", "offline"}
    assert all(Path(s["readme"]).is_file() for s in listed)


# --- the real command tree -----------------------------------------------------------------------


# Typer vendors its own click: the tree is walked through the objects' public attributes
# (``commands`` of a group, ``params`` of a command) rather than by importing click.
Command = Any


@pytest.fixture(scope="module")
def commands() -> Command:
    """dexkit's real command tree, every command registered, as `dexkit` builds it."""
    cli._register([])
    return typer.main.get_command(cli.app)


def _parse(commands: Command, words: list[str]) -> tuple[Command, Any] | None:
    """Parse ``dexkit WORDS`` with the real parser (types and values too); None if the command
    is not registered."""
    command = commands
    path = ["dexkit"]
    rest = list(words)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        found = command.commands.get(rest[0])
        if found is None:
            return None
        path.append(rest.pop(0))
        command = found
    return command, command.make_context(" ".join(path), rest)


def _options(command: Command) -> set[str]:
    return {o for p in command.params if p.param_type_name == "option"
            for o in (*p.opts, *p.secondary_opts)}


def _flags(words: list[str]) -> set[str]:
    return {w.split("=", 1)[0] for w in words if w.startswith("--")}


@pytest.mark.parametrize("name", NAMES)
def test_expectations_are_valid_dexkit_verify_arguments(commands: Command,
                                                        name: str) -> None:
    expected: Expectations = get_scenario(name).expectations()
    parsed = _parse(commands, ["verify", *expected.verify_args()])
    assert parsed is not None
    _, ctx = parsed
    assert ctx.params["grant"] == expected.login.grant
    assert ctx.params["expect_user"] == expected.api_server.username
    assert list(ctx.params["expect_group"]) == expected.api_server.groups
    assert list(ctx.params["can"] or []) == expected.can
    assert list(ctx.params["cannot"] or []) == expected.cannot


# --- the kind CI recipe --------------------------------------------------------------------------


def _workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _steps() -> list[dict[str, Any]]:
    (job,) = _workflow()["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _commands(program: str) -> list[list[str]]:
    """Every command line of the workflow's ``run:`` scripts that starts with ``program``."""
    found = []
    for step in _steps():
        script = step.get("run", "")
        for line in script.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == program:
                found.append(words[1:])
    return found


def test_workflow_is_a_github_actions_workflow() -> None:
    data = _workflow()
    assert data["name"]
    triggers = data.get("on", data.get(True))  # YAML 1.1 (PyYAML) reads the key 'on' as True
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = data["jobs"].values()
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] <= 60
    for step in job["steps"]:
        assert ("run" in step) != ("uses" in step), step
    names = [s["name"] for s in job["steps"] if "run" in s]
    assert len(names) == len(set(names))
    assert job["steps"][-1].get("if") == "always()"  # the cluster is always deleted


def test_workflow_runs_the_recipe_in_order() -> None:
    order = [" ".join(["dexkit", *w[:1]]) for w in _commands("dexkit") if w[:1] != ["--version"]]
    assert order == ["dexkit init", "dexkit render", "dexkit deploy", "dexkit verify",
                     "dexkit verify", "dexkit doctor"]
    (init,) = [w for w in _commands("dexkit") if w[:1] == ["init"]]
    assert init[init.index("--scenario") + 1] == "kind-ci"


DEXKIT_LINES = [w for w in _commands("dexkit") if w[:1] != ["--version"]]


@pytest.mark.parametrize("words", DEXKIT_LINES, ids=[w[0] for w in DEXKIT_LINES])
def test_every_dexkit_command_of_the_workflow_exists_with_its_flags(
        commands: Command, words: list[str]) -> None:
    used = _flags(words)
    issue = ISSUE_FLAGS.get(words[0])
    parsed = _parse(commands, words)
    if parsed is None:
        assert issue is not None, f"'dexkit {words[0]}' is not a dexkit command"
        where, flags = issue
        assert used <= flags, (f"the workflow gives 'dexkit {words[0]}' {sorted(used - flags)}, "
                               f"which {where} does not specify")
        return
    command, _ = parsed  # the real parser accepted every flag and value
    if issue is not None:
        where, flags = issue
        missing = sorted((flags & used) - _options(command))
        assert not missing, f"'dexkit {words[0]}' exists but lacks {missing} ({where})"


def test_workflow_verify_asserts_the_kind_ci_expectations() -> None:
    (words,) = [w for w in _commands("dexkit") if w[:1] == ["verify"] and "password" in w]
    expected = get_scenario("kind-ci").expectations()

    def pairs(args: list[str]) -> list[tuple[str, str]]:
        return sorted((a, b) for a, b in itertools.pairwise(args)
                      if a.startswith("--") and not b.startswith("--"))

    wanted = pairs(expected.verify_args())
    assert [p for p in pairs(words[1:]) if p[0] not in ("--dir", "--context")] == wanted


def test_workflow_creates_the_cluster_from_what_dexkit_renders(
        dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = next(iter(_workflow()["jobs"].values()))["env"]
    (create,) = [w for w in _commands("kind") if w[:2] == ["create", "cluster"]]
    config_arg = create[create.index("--config") + 1]
    assert config_arg == f"$DEXKIT_DIR/out/{KIND_CONFIG}"
    image = create[create.index("--image") + 1]
    assert image == "$KIND_NODE_IMAGE"
    scenario_minor = get_scenario("kind-ci").config_data()["kubernetesVersion"]
    assert re.fullmatch(rf"kindest/node:v{re.escape(scenario_minor)}\.\d+(@sha256:[0-9a-f]+)?",
                        env["KIND_NODE_IMAGE"])
    project = tmp_path / "p"
    assert dexkit("init", "--scenario", "kind-ci", "--dir", project).code == 0
    assert dexkit("render", "--dir", project).code == 0
    assert (project / "out" / KIND_CONFIG).is_file()
    # The issuer is a host name, so the hosts script is rendered and the workflow runs it.
    assert (project / "out" / KIND_HOSTS).is_file()
    scripts = [s.get("run", "") for s in _steps()]
    assert any(f'sh "$DEXKIT_DIR/out/{KIND_HOSTS}"' in s for s in scripts)


def test_workflow_logs_in_with_the_job_token_and_falls_back_only_without_one() -> None:
    """The exchange runs when the job has an ID token and the password login only when it has
    none: a failing exchange fails the job instead of being hidden by the password."""
    data = _workflow()
    (job,) = data["jobs"].values()
    assert {**data.get("permissions", {}), **job.get("permissions", {})}["id-token"] == "write"
    by_id = {s["id"]: s for s in _steps() if "id" in s}
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in by_id["oidc"]["run"]
    assert "GITHUB_OUTPUT" in by_id["oidc"]["run"]
    assert by_id["exchange"]["if"] == "steps.oidc.outputs.available == 'true'"
    assert by_id["password"]["if"] == "steps.oidc.outputs.available != 'true'"
    assert not any(s.get("continue-on-error") for s in _steps())
    (exchange,) = [w for w in _commands("dexkit") if w[:1] == ["verify"] and "token-exchange" in w]
    config = get_scenario("kind-ci").config_data()
    (connector,) = [c for c in config["connectors"] if c.get("tokenExchange")]
    assert connector["issuer"] == "https://token.actions.githubusercontent.com"
    assert connector["tokenExchange"]["groupClaims"] == ["repository_owner"]
    assert "oidc:repository_owner:${GITHUB_REPOSITORY_OWNER}" in exchange


# --- the kind config against kind's v1alpha4 types -----------------------------------------------


@pytest.fixture(scope="module")
def kind_ci(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config, dict[str, Any]]:
    from dexkit.__main__ import main

    project = tmp_path_factory.mktemp("kind-ci") / "p"
    for args in (["init", "--scenario", "kind-ci", "--dir", str(project)],
                 ["render", "--dir", str(project)]):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0
    cluster = yaml.safe_load((project / "out" / KIND_CONFIG).read_text())
    return project, load_config(project).config, cluster


def test_kind_config_matches_kinds_v1alpha4_types(
        kind_ci: tuple[Path, Config, dict[str, Any]]) -> None:
    _, _, cluster = kind_ci
    jsonschema.Draft202012Validator.check_schema(CLUSTER_SCHEMA)
    jsonschema.validate(cluster, CLUSTER_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert cluster["apiVersion"] == KIND_API_VERSION
    assert kind_rule_errors(cluster) == []


@pytest.mark.parametrize("break_it", [
    lambda c: c["nodes"][0].update(extraMount=[]),
    lambda c: c["nodes"][0]["extraPortMappings"][0].update(protocol="tcp"),
    lambda c: c["nodes"][0]["extraPortMappings"][0].update(hostPort="32000"),
    lambda c: c["nodes"][0]["extraMounts"][0].update(readonly=True),
    lambda c: c.update(apiVersion="kind.sigs.k8s.io/v1alpha3"),
    lambda c: c["nodes"][0].update(role="master"),
], ids=["typo-field", "enum-case", "port-as-string", "field-case", "old-api", "bad-role"])
def test_the_kind_schema_is_not_vacuous(kind_ci: tuple[Path, Config, dict[str, Any]],
                                        break_it: Any) -> None:
    broken = json.loads(json.dumps(kind_ci[2]))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CLUSTER_SCHEMA, cls=jsonschema.Draft202012Validator)


def test_kind_rules_catch_a_duplicate_port_mapping(
        kind_ci: tuple[Path, Config, dict[str, Any]]) -> None:
    broken = json.loads(json.dumps(kind_ci[2]))
    mapping = broken["nodes"][0]["extraPortMappings"][0]
    broken["nodes"][0]["extraPortMappings"].append(dict(mapping, listenAddress=WILDCARD))
    assert kind_rule_errors(broken)
    broken["nodes"] = [dict(broken["nodes"][0], role="worker")]
    assert "must have at least one control-plane node" in kind_rule_errors(broken)


def test_kind_config_wires_the_api_server_to_the_bundled_dex(
        kind_ci: tuple[Path, Config, dict[str, Any]]) -> None:
    project, config, cluster = kind_ci
    (node,) = cluster["nodes"]
    assert node["role"] == "control-plane"
    mount, patches_mount = node["extraMounts"]
    assert patches_mount["containerPath"] == KUBEADM_PATCHES_DIR
    assert Path(patches_mount["hostPath"]) == (project / "out" / "kind" / "kubeadm-patches")
    host_path = Path(mount["hostPath"])
    assert host_path.is_absolute() and host_path == (project / "ssl" / "ca.pem").resolve()
    assert host_path.is_file()  # docker refuses to start the node with a missing bind source
    assert mount["containerPath"] == config.api_server.ca_file and mount["readOnly"] is True
    (mapping,) = node["extraPortMappings"]
    assert mapping["containerPort"] == config.dex.service.node_port == config.issuer_port
    text, init = node["kubeadmConfigPatches"]
    patch = yaml.safe_load(text)
    assert patch["kind"] == "ClusterConfiguration"
    # No apiVersion: kind applies it to any kubeadm version (tests/e2e/test_kind.py).
    assert "apiVersion" not in patch and "apiVersion" not in yaml.safe_load(init)
    args = patch["apiServer"]["extraArgs"]
    assert all(isinstance(v, str) for v in args.values())
    assert args == {f.name: f.value for f in apiserver_flags(config)}
    assert args["oidc-issuer-url"] == config.issuer
    (volume,) = patch["apiServer"]["extraVolumes"]
    assert set(volume) == {"name", "hostPath", "mountPath", "readOnly", "pathType"}
    assert volume["hostPath"] == volume["mountPath"] == args["oidc-ca-file"]
