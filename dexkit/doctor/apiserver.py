"""API-server checks: its OIDC configuration, where it can be seen, against what dexkit renders.

Where the kube-apiserver's command line can be seen, in this order:

1. kube-apiserver Pods in ``kube-system`` (label ``component=kube-apiserver``): kubeadm, kind
   and most self-managed clusters run it as a static pod, mirrored there. Files it names are on
   the node: doctor checks that they are mounted into the Pod, not what they hold.
2. The project's sandbox (``.dexkit/sandbox/state.json``), when its API server is the one the
   kubeconfig talks to: a local process whose files are on this machine, so their content is
   compared too. The sandbox renders the same config with the two file paths moved into its
   ``files/`` directory (:mod:`dexkit.sandbox.wiring`), and is judged against that.

Anything else (managed control planes) cannot be seen; the token check (``--login``) proves
the API-server side there.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from cryptography import x509

from dexkit import files
from dexkit.apiserverlog import TAIL_LINES
from dexkit.doctor.core import Context, Result, Skip, check, fail, ok, warn
from dexkit.errors import ClusterError, DexkitError
from dexkit.kube import list_objects, pod_log
from dexkit.oidc.discovery import explain_difference
from dexkit.pki import fingerprint
from dexkit.render.apiserver import username_expression
from dexkit.sandbox import wiring
from dexkit.sandbox.controlplane import SandboxLayout, SandboxState, sandbox_dir
from dexkit.sandbox.process import is_running

if TYPE_CHECKING:

    from dexkit.config import Config

PATCH_HINT = ("apply the flags dexkit renders: 'dexkit apiserver patch' on a kubeadm node, or "
              "'dexkit apiserver flags' to set them by hand")


@dataclass(frozen=True)
class Mount:
    path: str  # inside the Pod
    host_path: str | None  # on the node, for a hostPath volume


@dataclass(frozen=True)
class ApiServerView:
    """One kube-apiserver's command line, where it came from, and what it should be."""

    source: str
    args: tuple[str, ...]
    # None: a process on this machine (its files can be read here); else the Pod's mounts.
    mounts: tuple[Mount, ...] | None
    expected: Config
    log_file: Path | None = None  # a local API server's log
    pod: tuple[str, str] | None = None  # (namespace, name) of a Pod's

    @property
    def local(self) -> bool:
        return self.mounts is None

    def flags(self) -> dict[str, list[str]]:
        """Flag name -> every value given (``--name=value`` or ``--name value``)."""
        found: dict[str, list[str]] = {}
        i = 0
        while i < len(self.args):
            arg = self.args[i]
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                if not eq and i + 1 < len(self.args) and not self.args[i + 1].startswith("--"):
                    value = self.args[i + 1]
                    i += 1
                found.setdefault(name, []).append(value)
            i += 1
        return found

    def flag(self, name: str) -> str | None:
        """The value the API server uses: the last one given."""
        values = self.flags().get(name)
        return values[-1] if values else None

    @property
    def mode(self) -> str:
        return "authentication-config" if "authentication-config" in self.flags() else "flags"

    def mounted(self, path: str) -> Mount | None:
        """The mount that makes ``path`` visible inside the Pod."""
        for mount in self.mounts or ():
            base = mount.path.rstrip("/")
            if path == base or path.startswith(base + "/"):
                return mount
        return None


# --- finding the API server ---------------------------------------------------------------------


def pod_view(pod: dict[str, Any], config: Config) -> ApiServerView | None:
    """The kube-apiserver container of a Pod, or None when it runs none."""
    spec = pod.get("spec") or {}
    volumes = {v.get("name"): (v.get("hostPath") or {}).get("path")
               for v in spec.get("volumes") or []}
    for container in spec.get("containers") or []:
        command = [str(c) for c in container.get("command") or []]
        args = [str(a) for a in container.get("args") or []]
        line = command + args
        if not line or posixpath.basename(line[0]) != "kube-apiserver":
            continue
        mounts = tuple(Mount(str(m.get("mountPath")), volumes.get(m.get("name")))
                       for m in container.get("volumeMounts") or [])
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        return ApiServerView(f"Pod {namespace}/{name}", tuple(line[1:]), mounts, config,
                             pod=(namespace, name))
    return None


def sandbox_view(directory: Path, config: Config, server: str) -> ApiServerView | None:
    """The project's sandbox API server, if it runs and is the one at ``server``."""

    state = SandboxState.load(sandbox_dir(directory.resolve()))
    if state is None:
        return None
    endpoint = state.endpoints.get("kube-apiserver", "")
    record = next((p for p in state.processes if p.name == "kube-apiserver"), None)
    if record is None or endpoint.rstrip("/") != server.rstrip("/") or not is_running(record):
        return None
    args = tuple(record.argv[1:])
    mode = "authentication-config" if any(a.startswith("--authentication-config")
                                          for a in args) else "flags"
    expected = wiring.sandbox_config(config, SandboxLayout(state.dir).files, mode)  # type: ignore[arg-type]
    return ApiServerView(f"the project's sandbox kube-apiserver (pid {record.pid})", args, None,
                         expected, log_file=Path(record.log))


def views(ctx: Context) -> list[ApiServerView]:
    def load() -> list[ApiServerView]:
        try:
            pods = list_objects(ctx.cluster, "Pod", namespace="kube-system",
                                labels="component=kube-apiserver")
        except ClusterError:
            pods = []  # not allowed to list kube-system pods: the same as not visible
        found = [v for v in (pod_view(p, ctx.config) for p in pods) if v is not None]
        if found:
            return found
        sandbox = sandbox_view(ctx.directory, ctx.config, ctx.cluster.server)
        return [sandbox] if sandbox is not None else []
    return ctx.fact("apiserver.views", load)


@check("apiserver.visible", needs=("cluster.reachable", "local.config"), cluster=True)
def visible(ctx: Context) -> Result:
    """The kube-apiserver's command line can be seen (its Pod, or the project's sandbox)."""
    found = views(ctx)
    if not found:
        raise Skip("the kube-apiserver's configuration cannot be seen from here (no "
                   "kube-apiserver Pod in kube-system: a managed control plane?); "
                   "'--login password' proves the API-server side with a real token")
    return ok("; ".join(v.source for v in found))


# --- the mode -----------------------------------------------------------------------------------


def judge_mode(view: ApiServerView, wanted_mode: str) -> Result:
    flags = view.flags()
    oidc = sorted(f"--{name}" for name in flags if name.startswith("oidc-"))
    authn = "authentication-config" in flags
    if authn and oidc:
        return fail(f"{view.source} has both --authentication-config and {', '.join(oidc)}: "
                    "the API server refuses to start with both",
                    f"keep only those of apiServer.mode ({wanted_mode}): 'dexkit apiserver "
                    "patch' removes the others")
    if not authn and "oidc-issuer-url" not in flags:
        extra = f" ({', '.join(oidc)} without it)" if oidc else ""
        return fail(f"{view.source} has neither --oidc-issuer-url nor --authentication-config"
                    f"{extra}: it accepts no token from Dex",
                    f"{PATCH_HINT}; with kind, create the cluster from the config 'dexkit "
                    "render' writes (kind skips a kubeadm patch that names another kubeadm "
                    "apiVersion than the node image's, as configs of older dexkit releases do)")
    live = view.mode
    shown = f"--authentication-config={flags['authentication-config'][-1]}" if authn else \
        "--oidc-* flags"
    if live != wanted_mode:
        return warn(f"{view.source} uses {shown}, but dexkit.yaml says apiServer.mode: "
                    f"{wanted_mode}",
                    "render and apply the configured mode ('dexkit apiserver patch'), or set "
                    f"apiServer.mode: {live}")
    return ok(f"{view.source}: {shown}, as dexkit.yaml says")


def _worst(results: list[Result]) -> Result:
    for status in ("fail", "warn"):
        bad = [r for r in results if r.status == status]
        if bad:
            hints = list(dict.fromkeys(r.hint for r in bad if r.hint))
            return Result("", status, "; ".join(r.message for r in bad), "; ".join(hints))
    return Result("", "ok", "; ".join(r.message for r in results))


@check("apiserver.mode", needs=("apiserver.visible",), cluster=True)
def mode(ctx: Context) -> Result:
    """One OIDC mode is set: --oidc-* flags or --authentication-config, never both."""
    return _worst([judge_mode(v, ctx.config.api_server.mode) for v in views(ctx)])


# --- its authenticator, from its own log ---------------------------------------------------------


def logs(ctx: Context) -> dict[str, str]:
    """Each visible API server's recent log, by source ('' when it cannot be read here): what
    token.review reads when the API server refuses the token (dexkit.apiserverlog). Not a check
    of its own: a success is not logged, so without a refused token the log alone cannot tell
    a failing authenticator from one that has just recovered (or one waiting for a stand-in)."""
    def load() -> dict[str, str]:
        found: dict[str, str] = {}
        for view in views(ctx):
            text = ""
            try:
                if view.pod is not None:
                    text = pod_log(ctx.cluster, *view.pod, "kube-apiserver", tail=TAIL_LINES)
                elif view.log_file is not None:
                    text = view.log_file.read_text(errors="replace")[-200_000:]
            except (ClusterError, OSError):
                text = ""
            found[view.source] = text
        return found
    return ctx.fact("apiserver.logs", load)


# --- issuer, client ID, claims --------------------------------------------------------------------


def _effective_flags(view: ApiServerView) -> dict[str, Any]:
    """What the API server does with its --oidc-* flags, defaults applied as it applies them."""
    issuer = view.flag("oidc-issuer-url") or ""
    claim = view.flag("oidc-username-claim") or "sub"
    prefix = view.flag("oidc-username-prefix")
    if prefix is None or prefix == "":
        prefix = "" if claim == "email" else f"{issuer}#"
    elif prefix == "-":
        prefix = ""
    groups_claim = view.flag("oidc-groups-claim") or ""
    required: dict[str, str] = {}
    for value in view.flags().get("oidc-required-claim", []):
        for pair in value.split(","):
            key, _, val = pair.partition("=")
            if key:
                required[key] = val
    return {
        "issuer": issuer,
        "client ID": view.flag("oidc-client-id") or "",
        "username claim": claim,
        "username prefix": prefix,
        "groups claim": groups_claim,
        "groups prefix": (view.flag("oidc-groups-prefix") or "") if groups_claim else "",
        "signing algorithms": sorted((view.flag("oidc-signing-algs") or "RS256").split(",")),
        "required claims": required,
    }


def _wanted(config: Config) -> dict[str, Any]:
    api = config.api_server
    return {
        "issuer": config.issuer,
        "client ID": api.client_id,
        "username claim": api.username_claim,
        "username prefix": config.effective_username_prefix,
        "groups claim": api.groups_claim,
        "groups prefix": api.groups_prefix if api.groups_claim else "",
        "signing algorithms": sorted(api.signing_algs),
        "required claims": dict(api.required_claims),
    }


_FLAG_OF = {"issuer": "--oidc-issuer-url", "client ID": "--oidc-client-id",
            "username claim": "--oidc-username-claim",
            "username prefix": "--oidc-username-prefix", "groups claim": "--oidc-groups-claim",
            "groups prefix": "--oidc-groups-prefix",
            "signing algorithms": "--oidc-signing-algs",
            "required claims": "--oidc-required-claim"}


def differences(live: dict[str, Any], wanted: dict[str, Any], names: dict[str, str]) -> list[str]:
    found = []
    for key, want in wanted.items():
        have = live.get(key)
        if have == want:
            continue
        line = f"{names.get(key, key)} is {have!r}, dexkit.yaml says {want!r}"
        if key == "issuer" and isinstance(have, str):
            line += f" ({explain_difference(want, have)}; they must match byte for byte)"
        found.append(line)
    return found


def judge_flags(view: ApiServerView) -> Result:
    problems = differences(_effective_flags(view), _wanted(view.expected), _FLAG_OF)
    if problems:
        return fail(f"{view.source}: " + "; ".join(problems), PATCH_HINT)
    config = view.expected
    return ok(f"{view.source}: issuer {config.issuer}, client '{config.api_server.client_id}', "
              "claims and prefixes as dexkit renders them")


def read_authentication_config(view: ApiServerView) -> dict[str, Any]:
    """The AuthenticationConfiguration file of a local API server, parsed."""

    path = Path(view.flag("authentication-config") or "")
    try:
        data = yaml.safe_load(files.read_text(path, what="an AuthenticationConfiguration"))
    except OSError as exc:
        raise DexkitError(f"{view.source} reads {path}, which cannot be read here "
                          f"({exc.strerror})", PATCH_HINT) from None
    except yaml.YAMLError:
        raise DexkitError(f"{path} is not valid YAML: the API server cannot load it",
                          PATCH_HINT) from None
    if not isinstance(data, dict) or data.get("kind") != "AuthenticationConfiguration":
        raise DexkitError(f"{path} is not an AuthenticationConfiguration", PATCH_HINT)
    return data


def jwt_entry(data: dict[str, Any], issuer: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The jwt authenticator for ``issuer`` and the issuer URLs of all of them."""
    entries = [e for e in data.get("jwt") or [] if isinstance(e, dict)]
    urls = [str((e.get("issuer") or {}).get("url", "")) for e in entries]
    match = next((e for e, url in zip(entries, urls, strict=True) if url == issuer), None)
    return match, urls


def judge_authentication_config(view: ApiServerView, data: dict[str, Any]) -> Result:
    config = view.expected
    api = config.api_server
    entry, urls = jwt_entry(data, config.issuer)
    path = view.flag("authentication-config")
    if entry is None:
        near = [u for u in urls if u.rstrip("/").lower() == config.issuer.rstrip("/").lower()]
        why = f" ('{near[0]}': {explain_difference(config.issuer, near[0])})" if near else \
            f" (it has {', '.join(urls) or 'no jwt issuer'})"
        return fail(f"{path} has no jwt issuer.url equal to {config.issuer}{why}", PATCH_HINT)
    mappings = entry.get("claimMappings") or {}
    username, groups = mappings.get("username") or {}, mappings.get("groups") or {}
    audiences = [str(a) for a in (entry.get("issuer") or {}).get("audiences") or []]
    live = {
        "issuer": config.issuer,
        # Several audiences are fine as long as the client ID is one of them.
        "client ID": api.client_id if api.client_id in audiences else ", ".join(audiences),
        "username claim": username.get("claim"),
        "username prefix": username.get("prefix"),
        "groups claim": groups.get("claim", ""),
        "groups prefix": groups.get("prefix", "") if groups.get("claim") else "",
    }
    wanted = {k: v for k, v in _wanted(config).items() if k in live}
    names = {"client ID": "issuer.audiences", "username claim": "claimMappings.username.claim",
             "username prefix": "claimMappings.username.prefix",
             "groups claim": "claimMappings.groups.claim",
             "groups prefix": "claimMappings.groups.prefix"}
    # A CEL expression replaces claim and prefix (apiServer.usernameExpression/groupsExpression).
    # With robots, dexkit renders the username expression itself.

    for part, mapping, expression in (("username", username, username_expression(config)),
                                      ("groups", groups, api.groups_expression)):
        if expression is not None:
            for target in (live, wanted):
                target.pop(f"{part} prefix", None)
            live[f"{part} claim"] = mapping.get("expression")
            wanted[f"{part} claim"] = expression
            names[f"{part} claim"] = f"claimMappings.{part}.expression"
    problems = differences(live, wanted, names)
    if problems:
        return fail(f"{path}: " + "; ".join(problems), PATCH_HINT)
    return ok(f"{path}: issuer {config.issuer}, audience '{api.client_id}', claims and "
              "prefixes as dexkit renders them")


@check("apiserver.oidc", needs=("apiserver.mode",), cluster=True)
def oidc(ctx: Context) -> Result:
    """The API server's issuer, client ID, claims and prefixes are what dexkit renders."""
    results = []
    for view in views(ctx):
        if view.mode == "flags":
            results.append(judge_flags(view))
        elif view.local:
            results.append(judge_authentication_config(view, read_authentication_config(view)))
        else:
            raise Skip(f"{view.source} reads {view.flag('authentication-config')} on its node; "
                       "its content cannot be read from here ('--login password' proves it)")
    return _worst(results)


# --- the CA the API server trusts for Dex ---------------------------------------------------------


def _certs(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def judge_ca_pem(what: str, pem: bytes, ours: x509.Certificate, ca_name: str,
                 hint: str) -> Result:
    held = _certs(pem)
    if any(fingerprint(c) == fingerprint(ours) for c in held):
        return ok(f"{what} holds dexkit's CA ({ca_name})")
    names = ", ".join(c.subject.rfc4514_string() for c in held) or "no certificate"
    return fail(f"{what} holds {names}, not dexkit's CA ({ours.subject.rfc4514_string()}, "
                f"{ca_name}): the API server cannot verify Dex's certificate, and refuses "
                "every token", hint)


def judge_ca(view: ApiServerView, ours: x509.Certificate, ca_name: str) -> Result:
    api = view.expected.api_server
    if view.mode == "flags":
        path = view.flag("oidc-ca-file")
        if not path:
            return fail(f"{view.source} has no --oidc-ca-file: it trusts only the system CAs, "
                        "and dexkit's CA is private", PATCH_HINT)
        copy = (f"copy {ca_name} to {path} on every API-server node and restart the API "
                "server (it reads the file at start)")
        moved = "" if path == api.ca_file else f" (dexkit.yaml says {api.ca_file})"
        if view.local:
            try:
                pem = files.read_limited(path)
            except OSError as exc:
                return fail(f"{view.source} reads --oidc-ca-file={path}{moved}, which cannot "
                            f"be read ({exc.strerror})", copy)
            return judge_ca_pem(f"--oidc-ca-file={path}{moved}", pem, ours, ca_name, copy)
        return _mounted(view, path, f"--oidc-ca-file={path}{moved}", copy)
    path = view.flag("authentication-config") or ""
    if view.local:
        data = read_authentication_config(view)
        entry, _ = jwt_entry(data, view.expected.issuer)
        if entry is None:
            raise Skip("no jwt entry for this issuer (apiserver.oidc says why)")
        inline = str((entry.get("issuer") or {}).get("certificateAuthority") or "")
        if not inline:
            return fail(f"{path}: the jwt entry for {view.expected.issuer} has no "
                        "certificateAuthority: the API server trusts only the system CAs",
                        PATCH_HINT)
        return judge_ca_pem(f"{path} (issuer.certificateAuthority)", inline.encode(), ours,
                            ca_name, "re-render it with 'dexkit render' (the CA is inlined "
                            "from ssl/ca.pem) and copy it to the node")
    return _mounted(view, path, f"--authentication-config={path}",
                    "mount its directory ('dexkit apiserver snippet', or 'dexkit apiserver "
                    "patch')")


def _mounted(view: ApiServerView, path: str, what: str, hint: str) -> Result:
    mount = view.mounted(path)
    if mount is None:
        return fail(f"{view.source}: {what} is not mounted into the Pod: the API server cannot "
                    "read it", "add the hostPath volume and mount 'dexkit apiserver snippet' "
                    "prints (or run 'dexkit apiserver patch'); " + hint)
    source = f"hostPath {mount.host_path}" if mount.host_path else "a non-hostPath volume"
    return ok(f"{view.source}: {what} is mounted from the node ({source} at {mount.path}); "
              "its content is on the node and cannot be compared from here")


@check("apiserver.ca", needs=("apiserver.mode", "local.tls-files"), cluster=True)
def ca(ctx: Context) -> Result:
    """The API server reads dexkit's CA: the file is mounted into its Pod, and (where it can be
    read) holds ssl/ca.pem."""
    ca_name = ctx.relative(ctx.paths.ca)
    return _worst([judge_ca(v, ctx.ca, ca_name) for v in views(ctx)])
