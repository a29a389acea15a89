"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of the pure cores behind the promise.

    python -m tests.fuzz.atheris_targets config|issuer|patch [libFuzzer flags, e.g. -runs=N
                                                               or -max_total_time=SECONDS]

Targets, each seeded with real inputs (the golden dexkit.yaml files, kubeadm manifests, good
issuers) that libFuzzer then mutates, guided by which lines of dexkit each input reaches:

- ``config``: any bytes as dexkit.yaml: :func:`decode_text` + :func:`parse_config` either
  return a Config or raise ConfigError with a hint; nothing else may escape.
- ``issuer``: any text as ``init --issuer`` (the names derived as init derives them): valid,
  and then everything derived from it works (the warnings init prints, the port, the host)
  and agrees with how urllib and httpx (``dexkit token``) read the URL, and a serving
  certificate for those names verifies for the issuer's host (what ``certs check`` asks), or
  UsageError; with a password planted in the userinfo, it is refused and never appears in
  the message.
- ``patch``: any text as a static-pod manifest: :func:`patch_static_pod` returns a patch that
  a second run leaves alone, or raises a DexkitError with a hint.

A finding is an uncaught exception: libFuzzer stops, prints it, and exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import atheris
import httpx

with atheris.instrument_imports(include=["dexkit"]):
    from dexkit import pki
    from dexkit.config import Config, decode_text, parse_config, to_data, validate_values
    from dexkit.errors import ConfigError, DexkitError, UsageError
    from dexkit.project import _names
    from dexkit.render.apiserver import patch_static_pod

ROOT = Path(__file__).resolve().parents[2]
MARKER = "Pw7MarkerZq"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
_CA_KEY = pki.generate_key("ecdsa-p256")
_CA = pki.create_ca(_CA_KEY, common_name="fuzz CA", days=30, now=NOW)
_LEAF_KEY = pki.generate_key("ecdsa-p256")
_CONFIGS = {
    mode: parse_config(f"apiServer:\n  mode: {mode}\n  requiredClaims:\n    hd: example.com\n")
    for mode in ("flags", "authentication-config")}


def _hinted(error: DexkitError) -> None:
    if not error.hint.strip() or not error.message.strip():
        raise AssertionError(f"an error without message or hint: {error.message!r}")


def config_target(data: bytes) -> None:
    try:
        parse_config(decode_text(data, "dexkit.yaml"))
    except ConfigError as error:
        _hinted(error)


def issuer_target(data: bytes) -> None:
    text = data[1:].decode("utf-8", "replace")
    planted = bool(data[:1]) and data[0] % 2 == 1
    issuer = f"https://u:{MARKER}@{text}" if planted else text
    base = to_data(Config())
    base["issuer"] = issuer
    base["tls"]["hosts"], base["tls"]["ips"] = _names(issuer, (), ())
    try:
        config = validate_values(base)
    except UsageError as error:
        _hinted(error)
        if MARKER in error.message + error.hint:
            raise AssertionError(f"the password was printed: {error.message!r}") from None
        return
    if planted:
        raise AssertionError(f"an issuer with a password was accepted: {issuer!r}")
    _derived_agree(config, issuer)
    leaf = pki.issue_serving_cert(ca_cert=_CA, ca_key=_CA_KEY, key=_LEAF_KEY,
                                  hosts=config.tls.hosts, ips=config.tls.ips, days=10, now=NOW)
    problem = pki.verify_chain(_CA, leaf, config.issuer_host, NOW + dt.timedelta(hours=1))
    if problem is not None:
        raise AssertionError(f"init accepts {issuer!r} but its certificate does not verify: "
                             f"{problem}")


def _derived_agree(config: Config, issuer: str) -> None:
    """What init computes after validation cannot fail (an issuer once passed validation and
    then broke config.warnings()), and the other parsers read the same host, port and path."""
    config.warnings()
    parts = config.issuer_parts
    split = urlsplit(issuer)
    url = httpx.URL(issuer)
    seen = {"urllib": (split.scheme, split.hostname, split.port or 443, split.path),
            # A host compares case-blind (httpx keeps an IPv6 address's case as written).
            "httpx": (url.scheme, url.host.lower(), url.port or 443, url.raw_path.decode() if
                      parts.path else "")}
    for parser, got in seen.items():
        if got != (parts.scheme, parts.host, parts.effective_port, parts.path):
            raise AssertionError(f"{parser} reads {issuer!r} as {got}, dexkit as {parts}")


def patch_target(data: bytes) -> None:
    mode = "flags" if not data or data[0] % 2 == 0 else "authentication-config"
    text = data[1:].decode("utf-8", "replace")
    config = _CONFIGS[mode]
    try:
        result = patch_static_pod(text, config)
    except DexkitError as error:
        _hinted(error)
        return
    again = patch_static_pod(result.text, config)
    if again.changed:
        raise AssertionError(f"a second patch changed the manifest again: {again.changes}")


TARGETS = {"config": config_target, "issuer": issuer_target, "patch": patch_target}


def seeds(target: str) -> list[bytes]:
    if target == "config":
        return [p.read_bytes() for p in sorted((ROOT / "tests/golden").glob("*/dexkit.yaml"))]
    if target == "issuer":
        return [b"\0" + s.encode() for s in (
            "https://dex.example.com:32000", "https://127.0.0.1:32000/dex",
            "https://[fe80::1]:443", "https://a.b.c", "https://h.example.com:1:2",
            "HTTPS://a.b.c/x/..")] + [b"\1dex.example.com:32000"]
    manifests = sorted((ROOT / "tests/unit/render/fixtures").glob("kube-apiserver-*.yaml"))
    return [prefix + p.read_bytes() for p in manifests for prefix in (b"\0", b"\1")]


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.stderr.write(f"usage: {argv[0]} {'|'.join(TARGETS)} [libFuzzer flags]\n")
        raise SystemExit(2)
    target = argv[1]
    corpus = Path(tempfile.mkdtemp(prefix=f"dexkit-atheris-{target}-"))
    for i, seed in enumerate(seeds(target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    flags = argv[2:]
    if not any(f.startswith("-artifact_prefix=") for f in flags):
        flags.append(f"-artifact_prefix={corpus}/")  # a finding never lands in the work tree
    atheris.Setup([argv[0], *flags, str(corpus)], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
