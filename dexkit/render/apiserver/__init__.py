"""The API-server side: ``--oidc-*`` flags, the AuthenticationConfiguration, the static-pod patch.

Rules:

- ``apiServer.mode: flags`` renders the ``--oidc-*`` flags; ``authentication-config`` renders an
  AuthenticationConfiguration and the single ``--authentication-config`` flag. Never both: the
  API server refuses to start with both.
- Issuer, client ID, claims and prefixes come from the same :class:`~dexkit.config.Config` as
  Dex's side, so the two cannot disagree.
- :func:`patch_static_pod` edits a kubeadm ``kube-apiserver.yaml`` as text: only the lines it
  adds, replaces or removes change, it is idempotent, and it refuses anything that is not a
  kube-apiserver Pod. Pure: text in, text and a unified diff out.
"""

from dexkit.render.apiserver.authn import (
    AUTHN_KIND,
    AUTHN_VOLUME,
    CA_VOLUME,
    EMAIL_VERIFIED_RULE,
    OWNED_PREFIX,
    Flag,
    HostPathMount,
    apiserver_flags,
    audiences,
    authentication_api_version,
    claim_validation_rules,
    host_path_mounts,
    identity_notes,
    normalise_pem,
    oidc_flags,
    render_authentication_config,
    render_dex_jwt_entry,
    render_flags_file,
    render_volume_snippet,
    username_expression,
)
from dexkit.render.apiserver.patch import (
    PatchResult,
    command_flags,
    patch_static_pod,
    wanted_mounts,
)

__all__ = [
    "AUTHN_KIND",
    "AUTHN_VOLUME",
    "CA_VOLUME",
    "EMAIL_VERIFIED_RULE",
    "OWNED_PREFIX",
    "Flag",
    "HostPathMount",
    "PatchResult",
    "apiserver_flags",
    "audiences",
    "authentication_api_version",
    "claim_validation_rules",
    "command_flags",
    "host_path_mounts",
    "identity_notes",
    "normalise_pem",
    "oidc_flags",
    "patch_static_pod",
    "render_authentication_config",
    "render_dex_jwt_entry",
    "render_flags_file",
    "render_volume_snippet",
    "username_expression",
    "wanted_mounts",
]
