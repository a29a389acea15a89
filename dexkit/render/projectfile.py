"""dexkit.yaml as ``dexkit init`` writes it: every section commented, in the guide's order.

In the dex, apiServer and eks sections every key is written (:func:`_File.put`), or shown
commented out with an example while it has its default (:func:`_File.opt`; leaving it out keeps
that default). A unit test keeps the list of keys shown neither way empty.

Written as code rather than as a Jinja template: the file is a fixed sequence of comments and
YAML values with no logic of its own, and ``dexkit init`` (whose time is benchmarked against
the guide's openssl script) then never imports Jinja nor compiles a template.
"""

from __future__ import annotations

import json
from typing import Any

from dexkit.config import APIServerSettings, Config, DexSettings, EKSSettings, to_data
from dexkit.render import to_yaml


class _File:
    """The lines being written, and the (section, key) pairs they show."""

    def __init__(self, data: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> None:
        self.data, self.defaults = data, defaults
        self.lines: list[str] = []
        self.shown: set[tuple[str, str]] = set()

    def text(self, block: str) -> None:
        """Comments (and blank lines) exactly as given."""
        self.lines += block.split("\n")

    def value(self, key: str) -> None:
        """``key: "value"``, the value as JSON (valid YAML, quoted as needed)."""
        self.lines.append(f"{key}: {json.dumps(self.data[key])}")

    def block(self, key: str) -> None:
        """A top-level section in block style, or ``key: []`` when it is an empty list."""
        value = self.data[key]
        if not value:
            self.lines.append(f"{key}: []")
        else:
            self.lines.append(f"{key}:\n  {to_yaml(value, 2)}")

    def put(self, section: str, *keys: str) -> None:
        self.shown.update((section, key) for key in keys)
        self.lines.append("\n".join("  " + to_yaml({key: self.data[section][key]}, 2)
                                    for key in keys))

    def opt(self, section: str, key: str, example: str) -> None:
        if self.data[section][key] != self.defaults[section][key]:
            self.put(section, key)
            return
        self.shown.add((section, key))
        self.lines.append(f"  # {key}: {example}")


def project_file(config: Config) -> tuple[str, list[str]]:
    """The commented dexkit.yaml, and the keys of its key-by-key sections it does not show."""
    defaults = {"dex": to_data(DexSettings()), "apiServer": to_data(APIServerSettings()),
                "eks": to_data(EKSSettings())}
    data = to_data(config)
    # Keys of list items left out while unset (a robot's clientCredentials, a connector's
    # tokenExchange): the file of a project that uses neither reads as it always has.
    for section, key in (("clients", "clientCredentials"), ("connectors", "tokenExchange")):
        for item in data[section]:
            if item.get(key, ...) is None:
                del item[key]
    f = _File(data, defaults)
    f.text("""\
# dexkit.yaml: the one file every dexkit artefact is rendered from.
# Written by `dexkit init`; edit it freely, then run `dexkit render` (or `dexkit init` again to
# re-issue the serving certificate after a host change). Keys are validated with line numbers.
# Commented-out keys show a setting at work; each left out keeps its default.

# The issuer URL, byte for byte as Dex publishes it and the API server expects it:
# https only, no query, no fragment, no trailing slash.""")
    f.value("issuer")
    f.text("# Namespace Dex is deployed into.")
    f.value("namespace")
    f.text("""\
# Kubernetes minor the API-server side is rendered for: 1.35-1.37 are proven on real API
# servers; 1.30-1.34 (end of life) still render, with a warning. It picks the
# AuthenticationConfiguration version (v1 from 1.34) and kubeadm's config format for kind.""")
    f.value("kubernetesVersion")
    f.text("""
# TLS assets, with the guide's file names: ssl/ca.pem, ssl/ca-key.pem, ssl/cert.pem, ssl/key.pem.
# hosts and ips are the serving certificate's SANs; they must cover the issuer's host.""")
    f.lines.append(f"tls:\n  {to_yaml(data['tls'], 2)}")
    f.text("""
# Dex itself. The keys after logLevel are the official Helm chart's, with its names (see
# docs/helm.md); each is rendered into the objects under out/dex/.
dex:
  # Pinned image, its pull policy, and pull secrets for a private registry.""")
    f.put("dex", "image", "imagePullPolicy")
    f.opt("dex", "imagePullSecrets", "[{name: regcred}]")
    f.text("""\
  # Replicas (more than one needs storage kubernetes or postgres), kept ReplicaSets, and the
  # update strategy.""")
    f.put("dex", "replicas", "revisionHistoryLimit")
    f.opt("dex", "strategy",
          "{type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}")
    f.text("  # Where Dex keeps its state: kubernetes (CRDs in its namespace), memory, sqlite3, "
           "postgres.")
    f.put("dex", "storage")
    f.text("""\
  # The Service: NodePort 32000 as in the guide. annotations, e.g. for a cloud load balancer;
  # telemetry: true also exposes the plain-HTTP port 5558 (/metrics, /healthz).""")
    f.put("dex", "service")
    f.text("""\
  # An Ingress (Dex speaks HTTPS to it). No hosts: the issuer's host and path with the serving
  # certificate; or several hosts, e.g. [{host: dex.example.com}, {host: login.example.com,
  # paths: [{path: /, pathType: Prefix}]}], and tls entries [{hosts: [...], secretName: ...}].""")
    f.put("dex", "ingress")
    f.put("dex", "logLevel", "idTokenLifetime")
    f.text("  # Container requests and limits.")
    f.put("dex", "resources")
    f.text("  # Scheduling.")
    f.opt("dex", "nodeSelector", "{kubernetes.io/os: linux}")
    f.opt("dex", "tolerations",
          "[{key: dedicated, operator: Equal, value: auth, effect: NoSchedule}]")
    f.opt("dex", "affinity", "{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
          "{nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, "
          "values: [amd64]}]}]}}}")
    f.text("  # Left out: one constraint per node when there is more than one replica; [] for "
           "none.")
    f.opt("dex", "topologySpreadConstraints", "[{maxSkew: 1, topologyKey: "
          "topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: "
          "{matchLabels: {app.kubernetes.io/name: dex}}}]")
    f.opt("dex", "priorityClassName", "system-cluster-critical")
    f.opt("dex", "hostAliases", "[{ip: 10.0.0.10, hostnames: [ldap.corp.example]}]")
    f.text("  # Labels on every object (never on selectors), and on or for the pods only.")
    f.opt("dex", "commonLabels", "{team: platform}")
    f.opt("dex", "podLabels", '{sidecar.istio.io/inject: "false"}')
    f.opt("dex", "podAnnotations", '{prometheus.io/scrape: "true"}')
    f.text("  # ServiceAccount annotations: an IAM role (IRSA) or a GKE Workload Identity "
           "binding.")
    f.opt("dex", "serviceAccount",
          "{annotations: {eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/dex}}")
    f.text("""\
  # More environment: env (NAME: value), envVars (Kubernetes EnvVars, e.g. valueFrom), envFrom
  # (whole Secrets or ConfigMaps), for extraConfig's own $VARIABLES. dexkit's own come first.""")
    f.opt("dex", "env", "{TZ: UTC}")
    f.opt("dex", "envVars", "[{name: LDAP2_BIND_PASSWORD, valueFrom: {secretKeyRef: {name: "
          "ldap2, key: password}}}]")
    f.opt("dex", "envFrom", "[{secretRef: {name: dex-extra}}]")
    f.text("  # More volumes and where to mount them: web themes, CA bundles...")
    f.opt("dex", "volumes", "[{name: theme, configMap: {name: dex-theme}}]")
    f.opt("dex", "volumeMounts",
          "[{name: theme, mountPath: /srv/dex/web/themes/corp, readOnly: true}]")
    f.text("  # A prometheus-operator ServiceMonitor for /metrics (it turns the telemetry port "
           "on).")
    f.opt("dex", "serviceMonitor", "{enabled: true, interval: 30s, labels: {release: "
          "prometheus}}")
    f.text("""\
  # A NetworkPolicy: Dex's ports only, from ingressFrom peers (all if none); egressRules, if
  # given, restrict egress (allow DNS, the API server, the upstream identity providers).""")
    f.opt("dex", "networkPolicy",
          "{enabled: true, egressRules: [{ports: [{port: 53, protocol: UDP}]}]}")
    f.text("  # A HorizontalPodAutoscaler instead of replicas (a CPU target needs "
           "resources.requests.cpu).")
    f.opt("dex", "autoscaling", "{enabled: true, minReplicas: 2, maxReplicas: 5, "
          "targetCPUUtilizationPercentage: 80}")
    f.text("  # Dex's gRPC API (5557), mutual TLS: clients need a certificate signed by "
           "ssl/ca.pem.")
    f.opt("dex", "grpc", "{enabled: true}")
    f.text("""\
  # Merged into Dex's config: expiry, frontend, oauth2, more connectors or clients... What
  # dexkit renders itself (issuer, storage, web listeners, the API server's client) is refused.""")
    f.opt("dex", "extraConfig", "{expiry: {refreshTokens: {validIfNotUsedFor: 168h}}, "
          "frontend: {theme: dark}}")
    f.text("""
# Upstream identity providers: github (credentials from the Secret named by credentialsSecret,
# keys client-id and client-secret), ldap, oidc, mockCallback (tests only).""")
    f.block("connectors")
    f.text("""
# Users of Dex's local password DB. Only bcrypt hashes live here; `dexkit init --connector
# static` keeps the generated password in .dexkit/passwords/<email> (mode 0600, git-ignored).""")
    f.block("staticUsers")
    f.text("""
# OAuth2 clients registered in Dex. apiServer.clientID names the one the API server trusts;
# public clients use PKCE and the loopback redirect URIs `dexkit login` listens on.""")
    f.lines.append(f"clients:\n  {to_yaml(data['clients'], 2)}")
    f.text("""
# How the kube-apiserver validates Dex's ID tokens. mode: flags (--oidc-*) or
# authentication-config (structured AuthenticationConfiguration); never both.
# usernamePrefix: null keeps the API server's rule (no prefix for email, '<issuer>#' otherwise).
apiServer:""")
    f.put("apiServer", "mode", "clientID", "caFile", "authenticationConfigFile", "usernameClaim",
          "usernamePrefix", "groupsClaim", "groupsPrefix", "signingAlgs")
    f.opt("apiServer", "requiredClaims", "{hd: example.com}")
    f.text("""\
  # authentication-config mode only (the flags cannot express these):
  # more audiences (MatchAny), a discovery URL other than the issuer's,""")
    f.opt("apiServer", "audiences", "[argocd]")
    f.opt("apiServer", "audienceMatchPolicy", "MatchAny")
    f.opt("apiServer", "discoveryURL",
          "https://dex.dex.svc:5556/.well-known/openid-configuration")
    f.text("  # CEL instead of claim and prefix for the username and groups, uid and extra "
           "mappings,")
    f.opt("apiServer", "usernameExpression", "\"'dex:' + claims.email\"")
    f.opt("apiServer", "groupsExpression", "\"claims.groups.map(g, 'oidc:' + g)\"")
    f.opt("apiServer", "uidClaim", "sub")
    f.opt("apiServer", "uidExpression", "claims.sub")
    f.opt("apiServer", "extra", "[{key: example.com/tenant, valueExpression: "
          "\"claims.?tenant.orValue('none')\"}]")
    f.text("""\
  # rules on the claims and on the resulting user, each with the message the API server logs
  # (left out, userValidationRules refuses system: usernames and groups; [] for none),""")
    f.opt("apiServer", "claimValidationRules", "[{expression: "
          "\"claims.email.endsWith('@example.com')\", message: only example.com accounts}]")
    f.opt("apiServer", "userValidationRules", "[{expression: "
          "\"!user.username.startsWith('system:')\", message: no system names}]")
    f.text("  # more issuers in the same file (the AuthenticationConfiguration's jwt shape), "
           "anonymous.")
    f.opt("apiServer", "extraJWT", "[{issuer: {url: https://token.actions.githubusercontent.com, "
          "audiences: [sts.example.com]}, claimMappings: {username: {claim: sub, prefix: "
          "\"gh:\"}}}]")
    f.opt("apiServer", "anonymous", "{enabled: true, conditions: [{path: /livez}]}")
    if data["clusters"]:
        f.text("""
# Several API servers trusting this Dex, each accepting only tokens for its own clientID
# (audience); apiServer above holds what they share. One login gives a token for each.""")
        f.block("clusters")
    f.text("""
# Optional ClusterRoleBindings for OIDC groups or users (the groups prefix is applied for you),
# e.g. [{group: team-a/admins, clusterRole: view}].""")
    f.block("rbac")
    f.text("""
# For clusters whose API-server flags you cannot set: `dexkit render --format eks|eksctl`.
eks:""")
    f.opt("eks", "clusterName", "prod")
    f.opt("eks", "region", "eu-west-1")
    f.put("eks", "identityProviderConfigName")
    f.opt("eks", "tags", "{team: platform}")
    text = "\n".join(f.lines) + "\n"
    return text, [f"{s}.{k}" for s in defaults for k in data[s] if (s, k) not in f.shown]
