"""Inputs a hostile user would type: dexkit.yaml texts, issuer URLs, static-pod manifests.

Each generator mixes three sources, because each finds different bugs: mutations of a real
file (a line dropped, doubled, re-indented, a character inserted), structured documents built
from the real key names with odd values (they get deep into validation), and raw noise.
``MARKER`` is a password planted where secrets live (issuer userinfo, a static user's hash): it
must never be printed.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import strategies as st

from dexkit.config import Config
from dexkit.project import render_config_file
from tests.unit.render.helpers import FIXTURES

MARKER = "Pw7MarkerZq"
# Characters that mean something to YAML, URLs or terminals, and a few that only look harmless.
_SPECIAL = ":-[]{}!&*#|>'\"%@`,?/\\=+~^$ \t\n\r\x00\x07\x1b\x85\u2028\ufeff\u00e4\u202e"
TEXT = st.text(st.sampled_from(_SPECIAL) | st.characters(codec="utf-8"), max_size=12)
_WORDS = ("issuer", "namespace", "kubernetesVersion", "tls", "dir", "hosts", "ips", "keyType",
          "caDays", "certDays", "dex", "image", "replicas", "storage", "type", "service",
          "nodePort", "port", "ingress", "enabled", "annotations", "logLevel",
          "idTokenLifetime", "connectors", "id", "name", "credentialsSecret", "orgs",
          "staticUsers", "email", "username", "userID", "hash", "groups", "clients",
          "redirectURIs", "public", "secretName", "apiServer", "mode", "clientID",
          "caFile", "usernameClaim", "usernamePrefix", "groupsClaim", "groupsPrefix",
          "signingAlgs", "requiredClaims", "rbac", "clusterRole", "group", "user",
          "github", "ldap", "oidc", "memory", "kubernetes", "NodePort", "flags",
          "authentication-config", "<<")
SCALARS = st.one_of(
    st.sampled_from(_WORDS), TEXT, st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.booleans(), st.none(),
    st.sampled_from(["1.10", "0755", "yes", "on", "~", "2026-13-45", "1e999", ".inf",
                     "24h", "forever", "-1h", "a,b", "https://dex.example.com:32000",
                     "999.1.1.1", "fe80::1%eth0"]))
KEYS = st.one_of(st.sampled_from(_WORDS), TEXT, st.integers(0, 3), st.booleans())


def _documents() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
        max_leaves=25)


def _secret_positions() -> st.SearchStrategy[dict[str, Any]]:
    """Documents with ``MARKER`` where a secret lives, and something else wrong or not."""
    user = st.fixed_dictionaries({"email": st.just("a@example.com"), "username": st.just("a"),
                                  "userID": st.just("1"), "hash": st.just(MARKER)})
    return st.one_of(
        st.builds(lambda rest, port: {"issuer": f"https://u:{MARKER}@dex.example.com{port}",
                                      **rest},
                  st.dictionaries(st.sampled_from(_WORDS), SCALARS, max_size=2),
                  st.sampled_from(["", ":0", ":32000", "/", "?a"])),
        st.builds(lambda u: {"staticUsers": [u], "connectors": []}, user),
        st.builds(lambda iss: {"connectors": [{"type": "oidc", "issuer": iss}]},
                  st.sampled_from([f"https://u:{MARKER}@up.example.com",
                                   f"http://{MARKER}@up.example.com/"])))


def _lines_mutated(text: str) -> st.SearchStrategy[str]:
    lines = text.splitlines(keepends=True)

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        out = list(lines)
        for _ in range(draw(st.integers(1, 4))):
            if not out:
                break
            i = draw(st.integers(0, len(out) - 1))
            kind = draw(st.sampled_from(["drop", "double", "indent", "dedent", "insert",
                                         "char", "key", "tab", "truncate", "crlf"]))
            line = out[i]
            if kind == "drop":
                del out[i]
            elif kind == "double":
                out.insert(i, line)
            elif kind == "indent":
                out[i] = "  " + line
            elif kind == "dedent":
                out[i] = line[2:] if line.startswith("  ") else line.lstrip()
            elif kind == "insert":
                out.insert(i, draw(TEXT) + "\n")
            elif kind == "char":
                at = draw(st.integers(0, len(line)))
                out[i] = line[:at] + draw(TEXT) + line[at:]
            elif kind == "key":
                indent = " " * draw(st.sampled_from([0, 2, 4, 6]))
                out.insert(i, f"{indent}{draw(KEYS)}: {yaml.safe_dump(draw(SCALARS)).strip()}\n")
            elif kind == "tab":
                out[i] = line.replace("  ", "\t", 1)
            elif kind == "truncate":
                out = [*out[:i], line[: len(line) // 2]]
            else:
                out[i] = line.replace("\n", "\r\n")
        return "".join(out)

    return mutate()


def _dump(value: Any) -> str:
    try:
        return yaml.safe_dump(value, allow_unicode=True)
    except yaml.YAMLError:
        return repr(value)


BASE_CONFIG = render_config_file(Config())
CONFIG_TEXTS = st.one_of(
    _lines_mutated(BASE_CONFIG),
    _documents().map(_dump),
    _secret_positions().map(_dump),
    TEXT,
)
CONFIG_BYTES = st.one_of(CONFIG_TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")),
                         st.binary(max_size=200))


# --- issuers ----------------------------------------------------------------------------------

_HOSTS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z0-9]{1,6}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.sampled_from(["[fe80::1%25eth0]", "[::1", "999.1.1.1", "0x7f.1", "exämple.com",
                     "xn--exmple-cua.com", "", "-a.com", "a..b", "localhost", "DEX.Example.COM",
                     "a_b.example.com", "*.example.com", "[::ffff:1.2.3.4]", "1.2.3.4.5"]),
    TEXT,
)
_PORTS = st.sampled_from(["", ":", ":0", ":1", ":443", ":32000", ":65535", ":65536",
                          ":99999999999", ":+1", ": 1", ":0x10", ":032000", ":-1", ":1:2",
                          ":32000:1", "::1"])
_USERINFO = st.sampled_from(["", "user@", f"user:{MARKER}@", f":{MARKER}@", f"{MARKER}@",
                             f"u:{MARKER}@u2@", f"u:{MARKER}/x@", f"{MARKER}:1@"])
_PATHS = st.one_of(
    st.sampled_from(["", "/", "/dex", "/dex/", "//", "/./x", "/a b", "/%41", "/%zz", "/ä",
                     "/dex/..", "/.", "/%2E%2e/x", "/a//b",
                     "/a\tb", "/a\nb", "/a;b=c", "/~u", "/a@b:c"]),
    TEXT.map(lambda t: "/" + t),
)
_TAILS = st.sampled_from(["", "", "", "?", "#", "?a=b", "#frag", "\n", " ", "\x00"])
ISSUERS = st.one_of(
    st.builds(lambda scheme, user, host, port, path, tail: f"{scheme}{user}{host}{port}{path}"
              f"{tail}",
              st.sampled_from(["https://", "https://", "http://", "HTTPS://", "ftp://",
                               "https:/", "https:", "", " https://"]),
              _USERINFO, _HOSTS, _PORTS, _PATHS, _TAILS),
    TEXT,
)


# --- static-pod manifests ---------------------------------------------------------------------

MANIFESTS = [p.read_text() for p in sorted(FIXTURES.glob("kube-apiserver-*.yaml"))]
_OWNED = ["--oidc-issuer-url", "--oidc_client_id", "--oidc-ca-file", "--oidc-username-claim",
          "--oidc-username-prefix", "--oidc-groups-claim", "--oidc-groups-prefix",
          "--oidc-signing-algs", "--oidc-required-claim", "--authentication-config"]


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """A kubeadm-like manifest, changed the way hands and other tools change them."""
    text = draw(st.sampled_from(MANIFESTS))
    lines = text.splitlines(keepends=True)
    flag_at = [i for i, line in enumerate(lines) if line.lstrip().startswith("- --")]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["split", "owned", "owned2", "spaced", "bare", "comment",
                                     "drop", "char", "blank", "trailing", "quote"]))
        i = draw(st.sampled_from(flag_at)) if flag_at else 0
        if i >= len(lines):
            continue
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        if kind == "split" and "=" in line:  # --name=value as two items, as pflag allows
            name, value = line.strip()[2:].split("=", 1)
            lines[i] = f"{indent}- {name}\n{indent}- {value}\n"
        elif kind in ("owned", "owned2"):
            flag, value = draw(st.sampled_from(_OWNED)), draw(SCALARS.map(str))
            shown = yaml.safe_dump([value], width=10**6).strip()[2:]
            lines.insert(i, f"{indent}- {flag}={shown}\n" if kind == "owned" else
                         f"{indent}- {flag}\n{indent}- {shown}\n")
        elif kind == "spaced":  # '--name value' as one item: one unknown flag to pflag
            flag, value = draw(st.sampled_from(_OWNED)), draw(st.sampled_from(
                ["https://old.example.com", "x", "-", "--x"]))
            lines.insert(i, f"{indent}- {flag} {value}\n")
        elif kind == "bare":  # a dexkit flag whose value item is missing
            lines.insert(i, f"{indent}- {draw(st.sampled_from(_OWNED))}\n")
        elif kind == "comment":
            lines.insert(i, f"{indent}# {draw(TEXT)}\n".replace("\r", ""))
        elif kind == "drop":
            del lines[i]
        elif kind == "char":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(TEXT) + line[at:]
        elif kind == "blank":
            lines.insert(i, "\n")
        elif kind == "trailing":
            lines[i] = line.rstrip("\n") + "   \n"
        else:
            lines[i] = line.replace("- ", '- "', 1).rstrip("\n") + '"\n'
    out = "".join(lines)
    if draw(st.booleans()):
        out = out.replace("\r\n", "\n").replace("\n", "\r\n")
    if draw(st.integers(0, 9)) == 0:
        out = "\ufeff" + out
    if draw(st.integers(0, 9)) == 0:
        out = out.rstrip("\r\n")
    return out
