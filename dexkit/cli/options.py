"""Options shared by several commands, so they read and behave the same everywhere."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dexkit.config import Config
    from dexkit.console import Output
    from dexkit.kube import Cluster, Target
    from dexkit.sandbox.target import Resolved

DirOption = Annotated[
    Path,
    typer.Option("--dir", "-d", envvar="DEXKIT_DIR", file_okay=False,
                 help="Project directory holding dexkit.yaml and ssl/."),
]


class Format(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"

    @property
    def structured(self) -> bool:
        """JSON or YAML: the same document, for scripts (``-o json``) or people (``-o yaml``)."""
        return self is not Format.text


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="Output format for data.")
]

KubeconfigOption = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="Kubeconfig file (default: KUBECONFIG, then "
                                      "~/.kube/config), read as kubectl reads it."),
]
ContextOption = Annotated[
    str | None, typer.Option("--context", help="Kubeconfig context (default: the current one).")
]


def project_config(out: Output, directory: Path) -> Config:
    """The project's dexkit.yaml, loaded and validated; its warnings are said here, once, for
    every command that reads it."""
    # Deferred until a command loads its project: the config model (msgspec) would add ~45
    # modules, ~45 ms to every 'dexkit COMMAND --help'.
    from dexkit.config import load_config  # noqa: PLC0415

    loaded = load_config(directory)
    for warning in loaded.warnings:
        out.warn(warning)
    return loaded.config


WIDTH = 12  # the step column of deploy and destroy: "would create" is the longest verb


def cluster_line(out: Output, cluster: Cluster, note: str = "") -> None:
    """The cluster a command changes, in the step column (deploy, destroy)."""
    out.step("cluster", f"{cluster.server} (context {cluster.context}){note}", width=WIDTH)


def cluster_target(out: Output, directory: Path, kubeconfig: Path | None,
                   context: str | None) -> Target:
    """The cluster a project command talks to (see :mod:`dexkit.sandbox.target`); one line
    says so when it is the project's running sandbox."""
    return resolve_cluster(out, directory, kubeconfig, context).target


def resolve_cluster(out: Output, directory: Path, kubeconfig: Path | None,
                    context: str | None) -> Resolved:
    """:func:`cluster_target`, with what was picked (the sandbox's state, if it was)."""
    # Deferred until a command resolves its cluster: ~30 modules, ~30 ms of every
    # 'dexkit COMMAND --help'.
    from dexkit.sandbox.target import resolve  # noqa: PLC0415

    resolved = resolve(directory, kubeconfig, context)
    if resolved.note:
        out.info(resolved.note)
    return resolved
