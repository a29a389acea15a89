"""``dexkit doctor``: name every broken link between the browser, Dex and the API server.

One module per group of checks, imported here in the order they run:

    local      dexkit.yaml, the TLS files (modes, key, chain, names, expiry), kubeconfig users
    network    the issuer host resolves, its port accepts TCP, TLS with dexkit's CA (and whose
               certificate is served when it fails), discovery's issuer, JWKS algorithms
    cluster    reachable; Dex's Deployment, Service, TLS Secret, config drift, RBAC
    apiserver  the kube-apiserver's --oidc-* flags or AuthenticationConfiguration, when visible
    token      with --login: a real login, the token's iss/aud/email_verified/groups, and what
               the API server makes of it (SelfSubjectReview)
    security   prefixes, example secrets, --insecure, clock skew

The machinery (results, registry, shared facts, the run) is in :mod:`dexkit.doctor.core`.
Adding a check is adding one function with ``@check("group.name", needs=...)`` to its group's
module, and one test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Imported for their @check registrations; the groups run in core.GROUPS order.
from dexkit.doctor import apiserver as apiserver
from dexkit.doctor import cluster as cluster
from dexkit.doctor import local as local
from dexkit.doctor import network as network
from dexkit.doctor import security as security
from dexkit.doctor import token as token
from dexkit.doctor.core import (
    REGISTRY,
    Check,
    DoctorRequest,
    Edges,
    Result,
    Summary,
    as_json,
    ordered,
    run_checks,
    summarise,
)

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["REGISTRY", "Check", "DoctorRequest", "Edges", "Result", "Summary", "as_json",
           "ordered", "run", "summarise"]


def run(request: DoctorRequest, edges: Edges | None = None,
        only: Collection[str] = ()) -> list[Result]:
    """Every registered check (or those in ``only``, ids or group names, with what they need),
    in order."""
    checks = ordered()
    if only:
        wanted = {c.id for c in checks if c.id in only or c.group in only}
        for chk in reversed(checks):
            if chk.id in wanted:
                wanted.update(chk.needs)
        checks = [c for c in checks if c.id in wanted]
    return run_checks(request, checks, edges)
