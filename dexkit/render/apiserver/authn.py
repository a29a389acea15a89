"""What the API server is given: the ``--oidc-*`` flags, or the AuthenticationConfiguration and
its one flag, and the host-path mounts that carry the CA and that file into the pod.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dexkit.config import ROBOT_USERNAME_PREFIX, to_data
from dexkit.errors import ConfigError, TLSError
from dexkit.render import render_template

if TYPE_CHECKING:

    from dexkit.config import Config


AUTHN_KIND = "AuthenticationConfiguration"
CA_VOLUME = "dexkit-oidc-ca"
AUTHN_VOLUME = "dexkit-authn-config"
# Volumes whose name starts with this are dexkit's: the patch may replace or remove them.
OWNED_PREFIX = "dexkit-"
# What the API server should check when the username is the email claim; the same rule the
# API server applies itself to --oidc-username-claim=email (its docs give this expression).
EMAIL_VERIFIED_RULE = "claims.?email_verified.orValue(true) == true"


# --- flags ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One kube-apiserver flag; ``str(flag)`` is ``--name=value``."""

    name: str
    value: str

    def __str__(self) -> str:
        return f"--{self.name}={self.value}"


def oidc_flags(config: Config) -> list[Flag]:
    """The guide's ``--oidc-*`` flags, every one spelled out (nothing left to defaults)."""
    api = config.api_server
    flags = [
        Flag("oidc-issuer-url", config.issuer),
        Flag("oidc-client-id", api.client_id),
        Flag("oidc-ca-file", api.ca_file),
        Flag("oidc-username-claim", api.username_claim),
        # '-' is the flag's way to say "no prefix"; an empty value would mean "the default".
        Flag("oidc-username-prefix", config.effective_username_prefix or "-"),
    ]
    if api.groups_claim:
        flags.append(Flag("oidc-groups-claim", api.groups_claim))
        if api.groups_prefix:
            flags.append(Flag("oidc-groups-prefix", api.groups_prefix))
    flags.append(Flag("oidc-signing-algs", ",".join(api.signing_algs)))
    if api.required_claims:
        flags.append(Flag("oidc-required-claim", _required_claims(config)))
    return flags


def _required_claims(config: Config) -> str:
    """``key=value`` pairs, comma-separated: the flag is a map that takes them this way."""
    pairs = sorted(config.api_server.required_claims.items())
    for key, value in pairs:
        if not key or any(ch in key for ch in ",=") or "," in value:
            raise ConfigError(
                f"apiServer.requiredClaims '{key}: {value}' cannot be passed as a flag",
                "claim names may not contain ',' or '=', values may not contain ','")
    return ",".join(f"{key}={value}" for key, value in pairs)


def apiserver_flags(config: Config) -> list[Flag]:
    """The flags for the configured mode: the OIDC flags, or only ``--authentication-config``."""
    if config.api_server.mode == "authentication-config":
        return [Flag("authentication-config", config.api_server.authentication_config_file)]
    return oidc_flags(config)


def identity_notes(config: Config) -> list[str]:
    """How the API server will name users and groups, in sentences (the ``<issuer>#`` rule)."""
    api = config.api_server
    claim = api.username_claim
    if api.username_prefix is None and claim == "email":
        user = ("usernames are the email claim as is: the API server does not prefix the "
                "email claim (and rejects tokens whose email_verified claim is false)")
    elif api.username_prefix is None:
        user = (f"usernames are '{config.issuer}#<{claim}>': the API server prefixes every claim "
                "but email with the issuer URL and '#', so that a claim users control cannot "
                "pass for another user; set apiServer.usernamePrefix to choose ('-' for none)")
    elif config.effective_username_prefix == "":
        user = f"usernames are the {claim} claim, without a prefix"
    else:
        user = f"usernames are '{config.effective_username_prefix}<{claim}>'"
    notes = [user]
    if api.groups_claim:
        notes.append(f"groups are '{api.groups_prefix}<{api.groups_claim}>'; RBAC bindings "
                     "must use these names (tokens carry groups only when the client asks "
                     "for the 'groups' scope)")
    return notes


def render_flags_file(config: Config) -> str:
    notes = [line for note in identity_notes(config) for line in _wrap(note)]
    return render_template("apiserver/flags.txt.j2", c=config, notes=notes,
                           flags=apiserver_flags(config))


def _wrap(text: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


# --- structured authentication configuration ------------------------------------------------------


def authentication_api_version(minor: int) -> str:
    """v1 from Kubernetes 1.34 (GA), v1beta1 for 1.30-1.33."""
    return "apiserver.config.k8s.io/v1" if minor >= 34 else "apiserver.config.k8s.io/v1beta1"


def refuses_unverified_email(config: Config) -> bool:
    """Whether the API server dexkit renders refuses a token whose email_verified is false: the
    username comes from the email claim, not from apiServer.usernameExpression (which then says
    all there is to say)."""
    api = config.api_server
    return api.username_claim == "email" and api.username_expression is None


def claim_validation_rules(config: Config) -> list[dict[str, str]]:
    """dexkit's email_verified rule (username from the email claim), requiredClaims, then
    apiServer.claimValidationRules as written."""
    api = config.api_server
    rules: list[dict[str, str]] = []
    if refuses_unverified_email(config):
        rules.append({"expression": EMAIL_VERIFIED_RULE,
                      "message": "the email address in the token is not verified"})
    rules += [{"claim": key, "requiredValue": value}
              for key, value in sorted(api.required_claims.items())]
    rules += [to_data(rule) for rule in api.claim_validation_rules]
    return rules


def username_expression(config: Config) -> str | None:
    """apiServer.usernameExpression; else, with robots (client_credentials clients), one
    that names a robot's token 'client:<id>' and everyone else's as the claim and prefix do.

    A robot's token has no email. It is told apart by its ``azp``: Dex sets it to the client
    that asked when a token has several audiences, which a robot's always has (its own and
    the cluster's it asks for); nobody else can authenticate as that client without its
    secret, and no client is rendered trusting the robot for its audience."""
    api = config.api_server
    if api.username_expression is not None or not config.robot_ids:
        return api.username_expression
    robots = ", ".join(json.dumps(r) for r in config.robot_ids)
    return (f"has(claims.azp) && claims.azp in [{robots}] ? "
            f"{json.dumps(ROBOT_USERNAME_PREFIX)} + claims.azp : "
            f"{json.dumps(config.effective_username_prefix)} + "
            f"claims[{json.dumps(api.username_claim)}]")


def audiences(config: Config) -> list[str]:
    return [config.api_server.client_id, *config.api_server.audiences]


def render_dex_jwt_entry(config: Config, ca_pem: str) -> str:
    """Dex's ``jwt`` authenticator as one block-list item at column 0, comments included."""
    api = config.api_server
    return render_template(
        "apiserver/jwt-dex.yaml.j2", c=config, ca_pem=normalise_pem(ca_pem),
        username_expression=username_expression(config),
        audiences=audiences(config), rules=claim_validation_rules(config),
        extra=[to_data(e) for e in api.extra],
        user_rules=[to_data(r) for r in api.effective_user_rules])


def render_authentication_config(config: Config, ca_pem: str) -> str:
    """The AuthenticationConfiguration: Dex's authenticator with the CA inlined, then
    apiServer.extraJWT's, and apiServer.anonymous."""
    api = config.api_server
    return render_template(
        "apiserver/authentication-config.yaml.j2", c=config,
        api_version=authentication_api_version(config.minor),
        dex_entry=render_dex_jwt_entry(config, ca_pem),
        extra_jwt=[dict(e) for e in api.extra_jwt],
        anonymous=to_data(api.anonymous) if api.anonymous is not None else None)


def normalise_pem(ca_pem: str) -> str:
    """The CA as one or more PEM certificates ending in one newline; anything else is refused."""
    text = ca_pem.replace("\r\n", "\n").strip()
    if not text.startswith("-----BEGIN CERTIFICATE-----") or \
            not text.endswith("-----END CERTIFICATE-----"):
        raise TLSError("the CA file is not a PEM certificate",
                       "run 'dexkit init' to create ssl/ca.pem, or put the CA there in PEM form")
    return text + "\n"


# --- what the API server must see from the node ---------------------------------------------------


@dataclass(frozen=True)
class HostPathMount:
    """A node path the API server needs, mounted read-only at the same path in its pod."""

    name: str
    path: str
    type: str  # the hostPath type: File or DirectoryOrCreate

    def volume(self) -> dict[str, Any]:
        # Keys in kubeadm's (alphabetical) order, so patched manifests read like kubeadm's own.
        return {"hostPath": {"path": self.path, "type": self.type}, "name": self.name}

    def volume_mount(self) -> dict[str, Any]:
        return {"mountPath": self.path, "name": self.name, "readOnly": True}


def host_path_mounts(config: Config) -> list[HostPathMount]:
    """The CA file in flags mode; the AuthenticationConfiguration's directory in that mode.

    The directory, not the file: the API server reloads the file when it changes, and a file
    bind mount would keep showing the old one after an atomic replace on the node.
    """
    api = config.api_server
    if api.mode == "flags":
        return [HostPathMount(CA_VOLUME, api.ca_file, "File")]
    directory = posixpath.dirname(api.authentication_config_file)
    if directory.count("/") < 2:
        raise ConfigError(
            f"apiServer.authenticationConfigFile must be in a directory of its own, not in "
            f"'{directory}': that whole directory is mounted into the API server",
            "use a path such as /etc/kubernetes/dexkit/authentication-config.yaml")
    return [HostPathMount(AUTHN_VOLUME, directory, "DirectoryOrCreate")]


def render_volume_snippet(config: Config) -> str:
    mounts = host_path_mounts(config)
    what = ("the OIDC CA file" if config.api_server.mode == "flags"
            else "the directory of the AuthenticationConfiguration")
    return render_template("apiserver/volumes.yaml.j2", what=what,
                           volume_mounts=[m.volume_mount() for m in mounts],
                           volumes=[m.volume() for m in mounts])
