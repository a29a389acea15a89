"""The registry and the runner: order, gating, errors turned into results, the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from dexkit import doctor
from dexkit.doctor.core import (
    GROUPS,
    Check,
    Context,
    DoctorRequest,
    Edges,
    Result,
    Skip,
    check,
    fail,
    ok,
    run_check,
    run_checks,
    summarise,
)
from dexkit.errors import TLSError


def test_every_check_needs_only_checks_that_run_before_it() -> None:
    order = [c.id for c in doctor.ordered()]
    for position, chk in enumerate(doctor.ordered()):
        for need in chk.needs:
            assert need in order[:position], f"{chk.id} needs {need}, which runs later"


def test_ids_are_group_dot_name_and_every_check_says_what_it_proves() -> None:
    for chk in doctor.ordered():
        group, _, name = chk.id.partition(".")
        assert group in GROUPS and name
        assert chk.title, f"{chk.id} has no docstring"
    assert {c.group for c in doctor.ordered()} == set(GROUPS)


def test_cluster_checks_are_the_ones_that_talk_to_the_cluster() -> None:
    for chk in doctor.ordered():
        if chk.group in ("cluster", "apiserver"):
            assert chk.cluster, chk.id


def test_a_second_registration_of_an_id_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        check("local.config")(lambda ctx: ok(""))
    with pytest.raises(ValueError, match="group"):
        check("nogroup")(lambda ctx: ok(""))


def _ctx(tmp_path: Path, **request: object) -> Context:
    return Context(DoctorRequest(directory=tmp_path, **request), Edges())  # type: ignore[arg-type]


def _chain(*checks: Check) -> list[Check]:
    return list(checks)


def test_a_failure_skips_what_needs_it_and_names_the_link(tmp_path: Path) -> None:
    results = run_checks(DoctorRequest(directory=tmp_path), _chain(
        Check("local.a", lambda ctx: fail("a is broken", "fix a")),
        Check("local.b", lambda ctx: ok("never runs"), needs=("local.a",)),
        Check("local.c", lambda ctx: ok("never runs"), needs=("local.b",)),
        Check("local.d", lambda ctx: ok("independent")),
    ))
    by_id = {r.id: r for r in results}
    assert by_id["local.a"] == Result("local.a", "fail", "a is broken", "fix a")
    assert by_id["local.b"].status == "skip" and "local.a, which failed" in by_id["local.b"].message
    assert "local.b, which was skipped" in by_id["local.c"].message
    assert by_id["local.d"].status == "ok"


def test_offline_and_login_gates_say_the_root_reason_down_the_chain(tmp_path: Path) -> None:
    results = run_checks(DoctorRequest(directory=tmp_path, offline=True), _chain(
        Check("cluster.a", lambda ctx: ok("x"), cluster=True),
        Check("cluster.b", lambda ctx: ok("x"), needs=("cluster.a",)),
        Check("token.a", lambda ctx: ok("x"), login=True),
        Check("token.b", lambda ctx: ok("x"), needs=("token.a",)),
    ))
    messages = [r.message for r in results]
    assert all(r.status == "skip" for r in results)
    assert messages[0].startswith("--offline") and messages[1].startswith("--offline")
    assert messages[2].startswith("no login") and messages[3].startswith("no login")


def test_errors_become_the_checks_result_and_never_end_the_run(tmp_path: Path) -> None:
    def known(ctx: Context) -> Result:
        raise TLSError("ssl/cert.pem is damaged", "restore it")

    def bug(ctx: Context) -> Result:
        raise KeyError("oops")

    def not_here(ctx: Context) -> Result:
        raise Skip("does not apply")

    results = run_checks(DoctorRequest(directory=tmp_path), _chain(
        Check("local.known", known), Check("local.bug", bug), Check("local.skip", not_here),
        Check("local.after", lambda ctx: ok("still runs"))))
    assert [(r.status, r.message, r.hint) for r in results] == [
        ("fail", "ssl/cert.pem is damaged", "restore it"),
        ("fail", "the check itself broke: KeyError: 'oops'",
         "report it as a dexkit bug, with this line"),
        ("skip", "does not apply", ""),
        ("ok", "still runs", ""),
    ]


def test_a_fact_is_loaded_once_and_a_failed_load_fails_the_same_way(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    calls: list[int] = []

    def load() -> int:
        calls.append(1)
        raise TLSError("broken", "hint")

    for _ in range(2):
        with pytest.raises(TLSError, match="broken"):
            ctx.fact("x", load)
    assert calls == [1]
    assert ctx.fact("y", lambda: 5) == 5 and ctx.fact("y", lambda: 6) == 5


def test_run_only_selected_groups_pulls_in_what_they_need(tmp_path: Path) -> None:
    results = doctor.run(DoctorRequest(directory=tmp_path, offline=True), only=("network.tls",))
    ids = [r.id for r in results]
    assert ids == ["local.config", "local.tls-files", "network.resolve", "network.tcp",
                   "network.tls"]
    assert results[0].status == "fail" and "dexkit init" in results[0].hint


def test_summary_and_json(tmp_path: Path) -> None:
    results = [Result("local.a", "ok", "fine"), Result("network.b", "fail", "broken", "fix"),
               Result("security.c", "warn", "hm", "look"), Result("token.d", "skip", "no")]
    summary = summarise(results)
    assert not summary.passed and summary.failed == ("network.b",)
    assert summary.sentence() == ("broken: network.b (1 failed, 1 warnings, 1 ok, 1 skipped)")
    data = doctor.as_json(results)
    assert data["passed"] is False and data["failed"] == ["network.b"]
    assert data["results"][1] == {"id": "network.b", "group": "network", "status": "fail",
                                  "message": "broken", "hint": "fix"}


def test_run_check_stamps_the_id(tmp_path: Path) -> None:
    result = run_check(Check("local.x", lambda ctx: ok("fine")), _ctx(tmp_path))
    assert result == Result("local.x", "ok", "fine")
