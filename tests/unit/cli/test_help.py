"""``dexkit --help`` answers from dexkit.__main__ without Typer: its list must be the CLI's."""

from __future__ import annotations

from dexkit import __main__ as entry
from dexkit.cli import COMMANDS


def test_the_lean_help_lists_exactly_the_registered_commands() -> None:
    assert sorted(name for name, _ in entry.COMMANDS) == sorted(COMMANDS)


def test_lean_help_shape(dexkit) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("--help")
    assert result.code == 0
    assert result.out.startswith("Usage: dexkit")
    assert all(f"  {name} " in result.out for name, _ in entry.COMMANDS)
    assert all(len(line) <= 100 for line in result.out.splitlines())
    bare = dexkit()
    assert bare.code == 2 and bare.out == result.out


def test_command_help_is_typers(dexkit) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("kubeconfig", "--help")
    assert result.code == 0 and "--embed-ca" in result.out
