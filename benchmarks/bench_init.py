"""Issue 2's targets: --help/--version never import kubernetes; `init --key-type rsa-2048` no
slower than the guide's openssl script; the default (ECDSA P-256) init at most half its time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import Timing, paired_ratio, table, time_command

HERE = Path(__file__).resolve().parent
RUNS = 15


def _imports_kubernetes(args: list[str]) -> bool:
    code = ("import sys\nfrom dexkit.__main__ import main\n"
            "try: main(sys.argv[1:])\nexcept SystemExit: pass\n"
            "sys.stderr.write(str('kubernetes' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=False)
    return out.stderr.strip().endswith("True")


def run() -> tuple[str, dict[str, float]]:
    dexkit = str(Path(sys.executable).with_name("dexkit"))
    work = Path(tempfile.mkdtemp(prefix="dexkit-bench-"))
    try:
        rows: list[Timing] = [
            time_command("python -c pass (floor)", lambda i: [sys.executable, "-c", "pass"], RUNS),
            time_command("dexkit --version", lambda i: [dexkit, "--version"], RUNS),
            time_command("dexkit --help", lambda i: [dexkit, "--help"], RUNS),
            time_command("guide gencert.sh (openssl, rsa-2048)",
                         lambda i: ["bash", HERE / "gencert.sh", work / f"g{i}"], RUNS),
            time_command("dexkit init --key-type rsa-2048",
                         lambda i: [dexkit, "init", "--dir", work / f"r{i}", "--key-type",
                                    "rsa-2048"], RUNS),
            time_command("dexkit init (ecdsa-p256, default)",
                         lambda i: [dexkit, "init", "--dir", work / f"e{i}"], RUNS),
        ]
        # Paired: each default init right after a gencert.sh run, a fresh directory each time;
        # the median of the per-pair ratios is robust to the machine's load changing.
        paired, _, _ = paired_ratio(
            lambda i: [dexkit, "init", "--dir", work / f"p{i}"],
            lambda i: ["bash", HERE / "gencert.sh", work / f"q{i}"], RUNS)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by = {r.name: r.median_ms for r in rows}
    script = by["guide gencert.sh (openssl, rsa-2048)"]
    rsa, ec = by["dexkit init --key-type rsa-2048"], by["dexkit init (ecdsa-p256, default)"]
    checks = {
        "--help imports kubernetes": _imports_kubernetes(["--help"]),
        "--version imports kubernetes": _imports_kubernetes(["--version"]),
    }
    verdicts = [
        f"- `init --key-type rsa-2048` / gencert.sh = {rsa / script:.2f} (target <= 1.00): "
        f"{'met' if rsa <= script else 'MISSED'}",
        f"- default `init` / gencert.sh = {ec / script:.2f} (target <= 0.50): "
        f"{'met' if ec <= script / 2 else 'MISSED'}",
        f"- default `init` / gencert.sh, median of {RUNS} paired runs = {paired:.2f} (target "
        f"<= 0.50): {'met' if paired <= 0.5 else 'MISSED'}",
    ] + [f"- {k}: {'yes (MISSED)' if v else 'no (met)'}" for k, v in checks.items()]
    text = "## `dexkit init` against the guide's gencert.sh\n\n" + table(
        rows, baseline="guide gencert.sh (openssl, rsa-2048)") + "\n\n" + "\n".join(verdicts)
    return text, {"init_rsa_ratio": rsa / script, "init_ec_ratio": ec / script,
                  "init_paired_ratio": paired}
