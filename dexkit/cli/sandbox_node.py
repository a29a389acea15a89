"""``dexkit sandbox up --node`` and ``dexkit sandbox exec``: the node sandbox (level 2).

``up --node`` rather than a command of its own: it is the same sandbox with a node added, so
``status``, ``down`` and every project command that finds the running sandbox work on it as on
level 1.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dexkit.console import Output
from dexkit.sandbox import wiring


def up_node(directory: Path, kubernetes_version: str | None, mode: wiring.Mode | None,
            timeout: float) -> None:
    """Start the node sandbox for the project in ``directory`` and say what runs where."""
    from dexkit.cli.options import project_config
    from dexkit.sandbox import node, peers

    out = Output()
    config = project_config(out, directory)
    version = peers.resolve_kubernetes_version(kubernetes_version)
    binaries = node.NodeBinaries.require(version)
    out.info(f"starting the node sandbox in {node.NodeLayout(directory.resolve()).sandbox} "
             f"(Kubernetes {version}) ...")
    started = time.monotonic()
    running = node.start(node.NodeRequest(
        project=directory, config=config, binaries=binaries, kubernetes_version=version,
        mode=mode, die_with_parent=False, ready_timeout=timeout),
        progress=lambda verb, detail: out.step(verb, detail))
    out.fields(node.describe(running),
               title=f"node sandbox ready in {time.monotonic() - started:.1f}s")
    where = "" if directory == Path() else f" --dir {directory}"
    out.next_step(f"'dexkit deploy{where}' runs Dex as the rendered Deployment; run commands "
                  f"that reach the issuer by name through 'dexkit sandbox exec{where} -- ...'; "
                  f"stop it with 'dexkit sandbox down{where}'")


def exec_in_node(directory: Path, argv: list[str]) -> None:
    """Replace this process with ``argv`` run in the node sandbox's mount namespace."""
    from dexkit.sandbox import controlplane, node

    target = controlplane.sandbox_dir(directory.resolve())
    node.exec_command(node.exec_argv(target, argv, Path.cwd()), dict(os.environ))
