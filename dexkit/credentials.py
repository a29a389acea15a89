"""The Secrets ``dexkit deploy`` fills from the project and the environment.

Rules:

- The TLS Secret (``config.tls_secret_name``, type ``kubernetes.io/tls``) holds ``ssl/cert.pem``
  as ``tls.crt``, ``ssl/key.pem`` as ``tls.key`` and ``ssl/ca.pem`` as ``ca.crt``.
- Every other Secret is one the rendered Deployment reads credentials from
  (:func:`dexkit.render.dex.credential_envs`): each key is filled from the environment variable
  the Dex container reads it as, so ``github-client``/``client-id`` comes from
  ``GITHUB_CLIENT_ID``, exactly the variable Dex expands in its config. No naming rule is
  repeated here.
- Values come from the process environment, then from an env file (``KEY=VALUE`` lines); the
  environment wins, as with docker compose. An empty value counts as unset.
- A key whose variable is unset keeps the value the cluster already has, so a deploy from a
  machine without the credentials does not wipe them. A key that is in neither place is an
  error that names every missing variable, raised before anything is changed.
- Values are never printed, logged or put into an error message; the Deployment carries only
  a keyed digest of them (see :func:`credentials_checksum`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dexkit import files
from dexkit.config import Config
from dexkit.errors import ConfigError, UsageError
from dexkit.labels import COMPONENT_LABEL as COMPONENT_LABEL
from dexkit.labels import CREDENTIALS_COMPONENT as CREDENTIALS_COMPONENT
from dexkit.labels import LABELS
from dexkit.render.dex import credential_envs

TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a secret

_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


# --- where values come from -----------------------------------------------------------------


def parse_env_file(text: str, source: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` allowed, ``#`` comments, optional quotes), as a shell or
    docker would read them for these simple cases."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            # The line may hold a credential: name its number, never its text.
            raise UsageError(f"{source}:{number}: not a KEY=VALUE line",
                             "write one variable per line, e.g. GITHUB_CLIENT_ID=...")
        key, value = match.groups()
        values[key] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    # An unquoted value ends where a comment starts, as in a shell.
    return re.split(r"\s+#", value, maxsplit=1)[0]


ENV_FILE_MAX_BYTES = 1024 * 1024


def read_env_file(path: Path) -> dict[str, str]:
    try:
        # a pipe is fine (--env-file <(vault ...)); a device or a huge file is not
        text = files.read_text(path, pipe=True, max_bytes=ENV_FILE_MAX_BYTES, what="an env file")
    except FileNotFoundError:
        raise UsageError(f"env file {path} does not exist", "check the --env-file path") from None
    return parse_env_file(text, str(path))


def merged_environment(environ: Mapping[str, str],
                       env_file: Mapping[str, str] | None = None) -> dict[str, str]:
    """The env file's values overlaid by the process environment; empty values dropped."""
    merged = {k: v for k, v in (env_file or {}).items() if v}
    merged.update({k: v for k, v in environ.items() if v})
    return merged


# --- which Secrets, and their values --------------------------------------------------------


@dataclass(frozen=True)
class CredentialSecret:
    """A Secret the Deployment reads: each key and the variables that can fill it."""

    name: str
    keys: dict[str, tuple[str, ...]]

    @property
    def variables(self) -> list[str]:
        return sorted({env for envs in self.keys.values() for env in envs})


def credential_secrets(config: Config) -> list[CredentialSecret]:
    """Every Secret the rendered Deployment's env references, in first-use order."""
    keys: dict[str, dict[str, list[str]]] = {}
    for item in credential_envs(config).all():
        envs = keys.setdefault(item.secret, {}).setdefault(item.key, [])
        if item.env not in envs:
            envs.append(item.env)
    secrets = [CredentialSecret(name, {k: tuple(v) for k, v in by_key.items()})
               for name, by_key in keys.items()]
    reserved = {config.tls_secret_name}
    for secret in secrets:
        if secret.name in reserved:
            raise ConfigError(f"the credentials Secret '{secret.name}' has the name of the TLS "
                              "Secret", "give the connector or client another secret name")
    return secrets


@dataclass(frozen=True)
class ResolvedSecret:
    """A credentials Secret with its values: from the environment, or kept from the cluster."""

    secret: CredentialSecret
    data: dict[str, bytes]
    from_env: tuple[str, ...] = ()  # keys whose value came from the environment
    kept: tuple[str, ...] = ()  # keys whose value the cluster already has

    @property
    def untouched(self) -> bool:
        """Nothing came from the environment: leave the cluster's Secret as it is."""
        return not self.from_env


@dataclass
class _Missing:
    variables: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)


def resolve_credentials(secrets: list[CredentialSecret], env: Mapping[str, str],
                        existing: Mapping[str, Mapping[str, bytes]]) -> list[ResolvedSecret]:
    """Values for every key of every Secret; one error naming all that are missing."""
    resolved, missing = [], _Missing()
    for secret in secrets:
        data: dict[str, bytes] = {}
        from_env: list[str] = []
        kept: list[str] = []
        live = existing.get(secret.name, {})
        for key, variables in secret.keys.items():
            value = _value_of(secret.name, key, variables, env)
            if value is not None:
                data[key] = value.encode()
                from_env.append(key)
            elif key in live:
                data[key] = live[key]
                kept.append(key)
            else:
                missing.variables += [v for v in variables if v not in missing.variables]
                if secret.name not in missing.secrets:
                    missing.secrets.append(secret.name)
        resolved.append(ResolvedSecret(secret, data, tuple(from_env), tuple(kept)))
    if missing.variables:
        raise ConfigError(
            f"missing credentials: {', '.join(missing.variables)} (for the Secret"
            f"{'s' if len(missing.secrets) > 1 else ''} {', '.join(missing.secrets)}); "
            "nothing was changed",
            "export them or put them in a file given with --env-file (KEY=VALUE lines)")
    return resolved


def _value_of(secret: str, key: str, variables: tuple[str, ...],
              env: Mapping[str, str]) -> str | None:
    values = {env[v] for v in variables if env.get(v)}
    if len(values) > 1:
        raise ConfigError(f"{', '.join(variables)} all fill {secret}/{key} but differ",
                          "set them to the same value, or point the connectors at different "
                          "Secrets")
    return values.pop() if values else None


# --- the objects ----------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _secret(name: str, namespace: str, data: Mapping[str, bytes], secret_type: str,
            component: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**LABELS, COMPONENT_LABEL: component}},
        "type": secret_type,
        "data": {key: _b64(value) for key, value in sorted(data.items())},
    }


@dataclass(frozen=True)
class TLSMaterial:
    """The serving certificate, its key and the CA, as the files hold them."""

    cert: bytes
    key: bytes
    ca: bytes


def tls_secret(config: Config, tls: TLSMaterial) -> dict[str, object]:
    return _secret(config.tls_secret_name, config.namespace,
                   {"tls.crt": tls.cert, "tls.key": tls.key, "ca.crt": tls.ca},
                   TLS_SECRET_TYPE, CREDENTIALS_COMPONENT)


def credential_secret(config: Config, resolved: ResolvedSecret) -> dict[str, object]:
    return _secret(resolved.secret.name, config.namespace, resolved.data, "Opaque",
                   CREDENTIALS_COMPONENT)


def tls_checksum(tls: TLSMaterial) -> str:
    """Changes whenever the certificate or CA does; a new key always comes with a new cert."""
    return hashlib.sha256(tls.cert + b"\0" + tls.ca).hexdigest()


def credentials_checksum(tls: TLSMaterial, resolved: list[ResolvedSecret]) -> str:
    """A digest that changes when any credential does, so the pods restart and Dex re-reads
    its environment. Keyed with the TLS private key: anyone who can read the Deployment but
    not the Secrets cannot test guesses of a weak password against it."""
    values = {r.secret.name: {k: _b64(v) for k, v in sorted(r.data.items())} for r in resolved}
    message = json.dumps(values, sort_keys=True).encode()
    return hmac.new(tls.key, message, hashlib.sha256).hexdigest()
