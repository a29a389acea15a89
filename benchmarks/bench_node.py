"""The node sandbox (issue 12): `dexkit sandbox up --node` until the node can run pods,
`dexkit deploy` until the Dex Pod is Ready (the rendered Deployment, kubernetes storage), and
`sandbox down`, with the build costs the node adds on a cold machine.

The guide's own project (issuer https://dex.example.com:32000, static users), with dex.image
pointed at the locally built image. Needs root, as the node sandbox does; without it the
section says so instead of a figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Timing, table

RUNS = 3


def _run(argv: list[str], cwd: Path) -> str:
    from dexkit.sandbox import peers

    env = {**os.environ, "NO_COLOR": "1", "HOME": str(cwd / "home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DEXKIT_CACHE_DIR": str(peers.cache_root())}
    env.pop("KUBECONFIG", None)
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {(result.stdout + result.stderr)[-800:]}")
    return result.stdout + result.stderr


def _timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    _run(argv, cwd)
    return (time.perf_counter() - start) * 1000


def _recorded_build_seconds() -> dict[str, float]:
    from dexkit.sandbox import peers

    found = {}
    for name in peers.NODE_PEERS:
        location = peers.locate(peers.peer_spec(name))
        if location.manifest is not None:
            found[name] = location.manifest.build_seconds
    return found


def _cold_images_ms() -> float:
    """Both images built into an empty cache (the pause program compiled, the Dex archive
    written); `up --node` does this once, then reuses the cached archives."""
    from dexkit.sandbox import images, peers

    root = Path(tempfile.mkdtemp(prefix="dexkit-bench-images-"))
    try:
        start = time.perf_counter()
        images.build_pause_image(root)
        images.build_dex_image(images.dex_source(peers.cache_root()), root)
        return (time.perf_counter() - start) * 1000
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run() -> tuple[str, dict[str, float]]:
    title = "## `dexkit sandbox up --node` and `dexkit deploy` on it\n\n"
    if os.geteuid() != 0:
        return title + "- not measured: the node sandbox needs root", {}
    dexkit = [sys.executable, "-m", "dexkit"]
    work = Path(tempfile.mkdtemp(prefix="dexkit-bench-node-"))
    up: list[float] = []
    deploy: list[float] = []
    down: list[float] = []
    try:
        _run([*dexkit, "init", "--connector", "static"], work)
        config = work / "dexkit.yaml"
        config.write_text(config.read_text().replace("image: ghcr.io/dexidp/dex:v2.45.1",
                                                     "image: dexkit.local/dex:v2.45.1", 1))
        for _ in range(RUNS):
            up.append(_timed([*dexkit, "sandbox", "up", "--node"], work))
            deploy.append(_timed([*dexkit, "deploy"], work))
            # Fails the bench (non-zero exit) unless the login through the Pod works.
            _run([*dexkit, "sandbox", "exec", "--", *dexkit, "verify", "--grant", "password"],
                 work)
            down.append(_timed([*dexkit, "sandbox", "down"], work))
    finally:
        subprocess.run([*dexkit, "sandbox", "down"], cwd=work, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    rows = [Timing(name, RUNS, sorted(s)[len(s) // 2], min(s), max(s)) for name, s in (
        ("dexkit sandbox up --node (ready = the node runs pods)", up),
        ("dexkit deploy (until the Dex Pod is Ready)", deploy),
        ("dexkit sandbox down (everything undone and checked)", down))]
    builds = _recorded_build_seconds()
    images_ms = _cold_images_ms()
    lines = [
        f"- `sandbox up --node` median {rows[0].median_ms / 1000:.1f} s, then `deploy` "
        f"{rows[1].median_ms / 1000:.1f} s until Dex's Pod is Ready; each run then passed "
        "`dexkit verify --grant password` through the NodePort",
        "- cold build the node adds: the four node peers "
        + (f"{sum(builds.values()):.0f} s as recorded in their manifests ("
           + ", ".join(f"{k} {v:.0f} s" for k, v in builds.items())
           + "), built after kube-apiserver in the same Go build cache, as CI builds them"
           if builds else "(not built)")
        + f"; the two images {images_ms / 1000:.1f} s from an empty image cache",
    ]
    text = title + table(rows) + "\n\n" + "\n".join(lines)
    return text, {"node_up_ms": rows[0].median_ms, "node_deploy_ms": rows[1].median_ms,
                  "node_down_ms": rows[2].median_ms,
                  "node_build_s": float(sum(builds.values()))}
