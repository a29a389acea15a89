"""One typed description of a login, built in one place.

Every way dexkit logs in (``dexkit token`` for kubectl, ``dexkit login``, ``dexkit verify``,
``dexkit doctor --login``) describes the login as the command line of ``dexkit token``, and
:func:`build_settings` turns that command line (parsed by :mod:`dexkit.oidc.options`) into a
:class:`LoginSettings`. A project's login is first written as that command line by
:func:`project_token_args` — the very arguments ``dexkit kubeconfig`` writes into kubeconfig —
so ``dexkit login`` fills exactly the cache entry kubectl's ``dexkit token`` reads.

The password, for the password grant, is looked up in one order, first found wins:

1. ``--password`` on the command line (kubelogin's flag; warned: every user of the machine
   can read a process's arguments);
2. ``--password-file FILE``;
3. the environment variable named by ``--password-env`` (default ``DEXKIT_PASSWORD``);
4. the project's ``.dexkit/passwords/<username>`` (written by ``dexkit init --connector
   static``), for commands run in a project;
5. a prompt, when there is a terminal to ask on.

Where each part lives (every name is re-exported here, so importers say
``dexkit.oidc.settings``):

- :mod:`~dexkit.oidc.settings.model`: the grants, :class:`LoginSettings` and the password
  lookup above;
- :mod:`~dexkit.oidc.settings.build`: :func:`build_settings` and the rule for each flag;
- :mod:`~dexkit.oidc.settings.project`: a project's login as that command line
  (:func:`project_token_args`, :func:`project_settings`, :func:`project_scopes`).
"""

from __future__ import annotations

from dexkit.oidc.settings.build import (
    build_settings,
)
from dexkit.oidc.settings.model import (
    AUDIENCE_SCOPE,
    CLIENT_DROPPED_SCOPES,
    DEFAULT_LISTEN,
    DEFAULT_RETRY_AFTER,
    DEFAULT_TIMEOUT,
    LOOPBACK_HOSTS,
    OFFLINE_ACCESS,
    OOB_REDIRECT,
    PASSWORD_MAX_BYTES,
    ROBOT_DROPPED_SCOPES,
    CacheStorage,
    Grant,
    LoginSettings,
    SubjectSource,
    read_password,
    stored_password,
)
from dexkit.oidc.settings.project import (
    ROBOT_SECRET_ENV,
    default_username,
    project_ca,
    project_scopes,
    project_settings,
    project_token_args,
)

__all__ = [
    "AUDIENCE_SCOPE",
    "CLIENT_DROPPED_SCOPES",
    "DEFAULT_LISTEN",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_TIMEOUT",
    "LOOPBACK_HOSTS",
    "OFFLINE_ACCESS",
    "OOB_REDIRECT",
    "PASSWORD_MAX_BYTES",
    "ROBOT_DROPPED_SCOPES",
    "ROBOT_SECRET_ENV",
    "CacheStorage",
    "Grant",
    "LoginSettings",
    "SubjectSource",
    "build_settings",
    "default_username",
    "project_ca",
    "project_scopes",
    "project_settings",
    "project_token_args",
    "read_password",
    "stored_password",
]
