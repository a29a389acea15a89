"""Throwaway TLS files for the test servers (slapd, an upstream Dex): the same CA and serving
certificate `dexkit init` makes, for localhost and 127.0.0.1, valid two days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dexkit import pki


def write_localhost_tls(directory: Path) -> pki.TLSPaths:
    """ca.pem, ca-key.pem, cert.pem and key.pem in ``directory``."""
    paths = pki.TLSPaths(directory)
    wanted = pki.Wanted(("localhost",), ("127.0.0.1",), "ecdsa-p256", ca_days=2, cert_days=2)
    pki.ensure_assets(paths, wanted, force=False, now=dt.datetime.now(dt.UTC))
    return paths
