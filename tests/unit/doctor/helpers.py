"""Shared by the doctor unit tests: projects made by dexkit init, contexts with faked edges."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from dexkit import pki
from dexkit.doctor import REGISTRY
from dexkit.doctor.core import Context, DoctorRequest, Edges, LoginMode, Result, run_check
from dexkit.kube import Target
from dexkit.project import InitRequest, init_project

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ISSUER = "https://dex.example.com:32000"


def make_base(directory: Path) -> Path:
    init_project(InitRequest(directory=directory, issuer=ISSUER, connector="static"), now=NOW)
    return directory


def make_project(base: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of ``base`` (made by 'dexkit init --connector static': CA, certificate, static
    user), with ``changes`` merged into dexkit.yaml (camelCase keys, nested dicts merged)."""
    project = tmp_path / "project"
    number = 1
    while project.exists():
        number += 1
        project = tmp_path / f"project-{number}"
    shutil.copytree(base, project)
    if changes:
        path = project / "dexkit.yaml"
        data = yaml.safe_load(path.read_text())
        _merge(data, changes)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        if "issuer" in changes or "tls" in changes:
            # re-issue the serving certificate for the new names, as 'dexkit init' does
            init_project(InitRequest(directory=project), now=NOW)
    return project


def _merge(into: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def context(project: Path, *, now: dt.datetime = NOW, offline: bool = False,
            login: LoginMode = "none", kubeconfig: Path | None = None,
            environ: Mapping[str, str] | None = None,
            resolve: Callable[[str, int], list[str]] | None = None,
            http: Callable[[Path], Any] | None = None,
            facts: Mapping[str, object] | None = None) -> Context:
    edges = Edges(clock=lambda: now, environ=dict(environ or {}), timeout=2.0,
                  **({"resolve": resolve} if resolve else {}),
                  **({"http": http} if http else {}))
    request = DoctorRequest(directory=project, target=Target(kubeconfig, None),
                            offline=offline, login=login)
    ctx = Context(request, edges)
    for key, value in (facts or {}).items():
        ctx.provide(key, value)
    return ctx


def run(ctx: Context, check_id: str) -> Result:
    """Run one check as if everything it needs had passed."""
    chk = REGISTRY[check_id]
    for need in chk.needs:
        ctx.results.setdefault(need, Result(need, "ok", "assumed"))
    result = run_check(chk, ctx)
    ctx.results[check_id] = result
    return result


def ca_and_leaf(hosts: list[str], *, now: dt.datetime = NOW, days: int = 365,
                common_name: str = "test CA",
                ) -> tuple[x509.Certificate, pki.PrivateKey, x509.Certificate, pki.PrivateKey]:
    ca_key = pki.generate_key("ecdsa-p256")
    ca = pki.create_ca(ca_key, common_name=common_name, days=3650, now=now)
    key = pki.generate_key("ecdsa-p256")
    leaf = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=hosts, ips=[],
                                  days=days, now=now)
    return ca, ca_key, leaf, key


def self_signed(host: str, now: dt.datetime = NOW) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = pki.generate_key("ecdsa-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))


def issue(ca: x509.Certificate, ca_key: pki.PrivateKey, hosts: list[str], *,
          now: dt.datetime = NOW, days: int = 365) -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.generate_key("ecdsa-p256")
    return pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=hosts, ips=[],
                                  days=days, now=now), key
