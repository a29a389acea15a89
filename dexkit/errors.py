"""The errors dexkit raises on purpose.

    DexkitError          a failure: exit 1
    ├── UsageError       a bad flag or argument: exit 2
    ├── ConfigError      dexkit.yaml is missing or invalid: exit 1, names file, key and line
    └── TLSError         certificates or keys are missing, broken or inconsistent: exit 1

Each carries a one-line message and a hint that says what to do next. They are raised at the
point of knowledge and turned into output once, in :mod:`dexkit.console`.
"""

from __future__ import annotations


class DexkitError(Exception):
    """A failure the user can act on; printed as ``error: …`` plus ``hint: …``."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(DexkitError):
    """A flag or argument that cannot be used as given."""

    exit_code = 2


class ConfigError(DexkitError):
    """dexkit.yaml is missing or does not validate."""


class TLSError(DexkitError):
    """The TLS assets are missing, broken or do not fit together."""


class OIDCError(DexkitError):
    """Discovery, login or token verification against the issuer failed."""


class LoginRequired(OIDCError):
    """No usable token and no way to log in without a person (non-interactive)."""


class ClusterError(DexkitError):
    """The Kubernetes API could not be reached or refused a request.

    ``status`` is the HTTP status the API server answered with (401, 403, ...), or None when
    no answer came (unreachable, TLS, a broken kubeconfig): callers test it, never the text.
    """

    def __init__(self, message: str, hint: str = "", *, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
