"""A project's login, written as the command line of ``dexkit token`` (:func:`project_token_args`,
the very arguments ``dexkit kubeconfig`` writes into kubeconfig), and the settings it makes
(:func:`project_settings`), so ``dexkit login`` fills exactly the cache entry kubectl's
``dexkit token`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dexkit.errors import UsageError
from dexkit.oidc import DEFAULT_SCOPES
from dexkit.oidc.settings.build import build_settings
from dexkit.oidc.settings.model import AUDIENCE_SCOPE, Grant, LoginSettings, stored_password

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dexkit.config import Config


def default_username(config: Config) -> str | None:
    return config.static_users[0].email if config.static_users else None


def project_token_args(directory: Path, config: Config, *, grant: str = "authcode",
                       username: str | None = None, client_id: str | None = None,
                       scopes: tuple[str, ...] | None = None, embed_ca: bool = False,
                       password_file: bool = True, cluster: str | None = None) -> list[str]:
    """``dexkit token``'s arguments for logging in to this project's Dex.

    ``client_id`` and ``scopes`` default to dexkit.yaml's (the client the API server trusts;
    ``groups`` only when the API server maps a groups claim). The CA is the project's
    ``ca.pem``, by absolute path or inline (``embed_ca``). For the password grant the
    username defaults to the first static user, and ``--password-file`` points at the
    project's stored password when there is one.

    With several clusters, ``cluster`` (or the one ``config`` was made for) gets the login
    client, every cluster's audience scope (one login for all) and ``--audience`` its own.
    Robots: token-exchange names the tokenExchange connector, the audience and issuer its
    subject tokens must have; client-credentials logs in as the (first) robot client, its
    secret from ``$DEXKIT_CLIENT_SECRET`` unless another source follows, for the audience
    of the API server.
    """
    ca = project_ca(directory.resolve(), config)
    chosen = config.cluster_named(cluster) if cluster else config.selected_cluster
    audience = chosen.client_id if chosen else None
    login = config.cluster_login_client(chosen) if chosen else config.login_client_id
    if grant == Grant.CLIENT_CREDENTIALS:
        client_id = client_id or _robot(config)
        audience = audience or config.api_server.client_id
    args = ["--issuer", config.issuer, "--client-id", client_id or login]
    if embed_ca:
        # base64 (~0.8 ms, 4 modules with struct) only for an embedded CA: the '--help' of
        # token, login, verify and kubeconfig load this module.
        import base64  # noqa: PLC0415

        # dexkit.files (~10 modules, ~5 ms: tempfile, random) only when a file is read: the
        # '--help' of token, login, verify and kubeconfig load this module.
        from dexkit.files import read_limited  # noqa: PLC0415

        try:
            data = read_limited(ca, trust=True)
        except OSError as exc:
            raise UsageError(f"cannot read the CA {ca}: {exc.strerror}",
                             "run 'dexkit init' first") from None
        args += ["--certificate-authority-data", base64.b64encode(data).decode()]
    else:
        args += ["--ca-file", str(ca)]
    for scope in scopes or project_scopes(config):
        args += ["--scope", scope]
    if chosen is not None and grant != Grant.CLIENT_CREDENTIALS:
        for other in config.clusters:
            if config.cluster_login_client(other) == login:
                args += ["--scope", AUDIENCE_SCOPE + other.client_id]
    if audience is not None:
        args += ["--audience", audience]
    if grant != Grant.AUTHCODE:
        args += ["--grant", grant]
    if grant == Grant.TOKEN_EXCHANGE:
        args += _exchange_args(config)
    if grant == Grant.CLIENT_CREDENTIALS:
        args += ["--client-secret-env", ROBOT_SECRET_ENV]
    if grant == Grant.PASSWORD:
        user = username or default_username(config)
        if not user:
            raise UsageError("the password grant needs --username", "name the user to log in as")
        args += ["--username", user]
        stored = stored_password(directory.resolve(), user)
        if password_file and stored.is_file():
            args += ["--password-file", str(stored)]
    return args


# Where 'dexkit verify --grant client-credentials' and a project's kubeconfig read a robot's
# secret from, unless --client-secret-file or another --client-secret-env follows.
ROBOT_SECRET_ENV = "DEXKIT_CLIENT_SECRET"  # noqa: S105 - a variable's name


def _robot(config: Config) -> str:
    if not config.robot_ids:
        raise UsageError("no client in dexkit.yaml logs in as itself",
                         "add clientCredentials to a confidential client under 'clients'")
    return config.robot_ids[0]


def _exchange_args(config: Config) -> list[str]:
    # The config model (~45 ms, ~46 modules) only for a project's login: the '--help' of
    # token, login, verify and kubeconfig load this module.
    from dexkit.config import OIDCConnector  # noqa: PLC0415

    found = [c for c in config.connectors
             if isinstance(c, OIDCConnector) and c.token_exchange is not None]
    if not found:
        raise UsageError("no connector in dexkit.yaml takes token exchanges",
                         "add an oidc connector with tokenExchange (the CI system's issuer)")
    conn = found[0]
    assert conn.token_exchange is not None
    return ["--connector-id", conn.id, "--subject-issuer", conn.issuer,
            "--subject-audience", conn.token_exchange.audience]


# The project's paths (dexkit.layout, ~0.8 ms) for the kubeconfig a project login writes;
# imported here, not at the top, so that the token path (which loads this module) loads one
# module fewer.
def project_ca(directory: Path, config: Config) -> Path:
    from dexkit.layout import tls_paths  # noqa: PLC0415

    return tls_paths(directory, config).ca


def project_scopes(config: Config) -> tuple[str, ...]:
    """dexkit's scopes, without ``groups`` when the API server maps no groups claim."""
    if config.api_server.groups_claim:
        return DEFAULT_SCOPES
    return tuple(s for s in DEFAULT_SCOPES if s != "groups")


def project_settings(directory: Path, config: Config, *, grant: str = "authcode",
                     username: str | None = None, client_id: str | None = None,
                     scopes: tuple[str, ...] | None = None, extra: list[str] | None = None,
                     environ: Mapping[str, str] | None = None,
                     cluster: str | None = None) -> LoginSettings:
    """A project's login settings: :func:`project_token_args`, then ``extra`` (later flags
    win), through :func:`build_settings`."""
    # No --password-file: the project's stored password comes after the environment.
    args = project_token_args(directory, config, grant=grant, username=username,
                              client_id=client_id, scopes=scopes, password_file=False,
                              cluster=cluster)
    return build_settings([*args, *(extra or [])], environ=environ,
                          project_dir=directory.resolve())
