"""The mapping verify and doctor hold the API server to: the config's prefix rules."""

from __future__ import annotations

from pathlib import Path

from dexkit.config import parse_config
from dexkit.errors import OIDCError
from dexkit.kube import Identity, Target
from dexkit.verify import (
    STEPS,
    Edges,
    Probe,
    Step,
    StepResult,
    VerifyRequest,
    _State,
    expected_identity,
    mapping_mismatch,
    run_step,
)

CLAIMS = {"email": "admin@example.com", "sub": "Cg1hZG1pbg", "groups": ["team-a", "team-a/x"]}


def test_email_has_no_prefix_and_groups_do() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000\n")
    assert expected_identity(config, CLAIMS) == (
        "admin@example.com", ["oidc:team-a", "oidc:team-a/x"])


def test_other_claims_get_the_issuer_hash_prefix() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000/dex\napiServer: {usernameClaim: sub}\n")
    assert expected_identity(config, CLAIMS)[0] == "https://127.0.0.1:32000/dex#Cg1hZG1pbg"


def test_mismatches_are_named() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000\n")
    good = Identity("admin@example.com", ("oidc:team-a", "oidc:team-a/x", "system:authenticated"))
    assert mapping_mismatch(config, CLAIMS, good) is None
    wrong_user = Identity("https://127.0.0.1:32000#admin@example.com", good.groups)
    message, hint = mapping_mismatch(config, CLAIMS, wrong_user) or ("", "")
    assert "promises 'admin@example.com'" in message and "prefix" in hint
    no_prefix = Identity("admin@example.com", ("team-a", "team-a/x"))
    message, _ = mapping_mismatch(config, CLAIMS, no_prefix) or ("", "")
    assert "does not see groups ['oidc:team-a', 'oidc:team-a/x']" in message


def test_what_cel_expressions_make_is_left_to_the_api_server() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000\napiServer: {mode: "
                          "authentication-config, usernameExpression: claims.name, "
                          "groupsExpression: claims.groups}\n")
    assert mapping_mismatch(config, CLAIMS, Identity("anything", ())) is None
    half = parse_config("issuer: https://127.0.0.1:32000\napiServer: {mode: "
                        "authentication-config, groupsExpression: claims.groups}\n")
    message, _ = mapping_mismatch(half, CLAIMS, Identity("someone", ())) or ("", "")
    assert "promises 'admin@example.com'" in message


def test_probes_parse() -> None:
    assert str(Probe.parse("list nodes")) == "list nodes"
    assert str(Probe.parse("get pods default")) == "get pods in default"


def test_every_step_needs_only_steps_that_run_before_it() -> None:
    names = [s.name for s in STEPS]
    assert names == ["TLS trust", "issuer discovery", "login", "token claims",
                     "API server review", "claim mapping", "authorization"]
    for position, chosen in enumerate(STEPS):
        for need in chosen.needs:
            assert need in names[:position], f"{chosen.name} needs {need}, which runs later"


def test_a_failure_is_timed_by_the_clock_and_skips_what_needs_it(tmp_path: Path) -> None:
    ticks = iter([10.0, 10.25])

    def refused(state: _State) -> str:
        raise OIDCError("refused", "fix it")

    state = _State(VerifyRequest(config=parse_config("issuer: https://127.0.0.1:32000\n"),
                                 project_dir=tmp_path, target=Target(), login=None),  # type: ignore[arg-type]
                   Edges(clock=lambda: next(ticks)))
    results: dict[str, StepResult] = {}
    results["a"] = run_step(Step("a", refused), state, results)
    results["b"] = run_step(Step("b", lambda state: "never runs", needs=("a",)), state, results)
    results["c"] = run_step(Step("c", lambda state: "never runs", needs=("b",)), state, results)
    assert list(results.values()) == [
        StepResult("a", "fail", "refused", "fix it", 0.25),
        StepResult("b", "skip", "an earlier step failed"),
        StepResult("c", "skip", "an earlier step failed")]


def test_email_verified_is_judged_as_the_rendered_api_server_judges_it() -> None:
    """With apiServer.usernameExpression dexkit renders no email_verified rule: verify and
    doctor must not refuse what that API server accepts."""
    from dexkit.verify import unverified_email
    from tests.unit.render.helpers import make_config

    unverified = {"email": "a@b.c", "email_verified": False}
    assert unverified_email(make_config(), unverified)
    assert not unverified_email(make_config(), {"email": "a@b.c"})
    expression = make_config({"apiServer": {"mode": "authentication-config",
                                            "usernameExpression": "claims.sub"}})
    assert not unverified_email(expression, unverified)
