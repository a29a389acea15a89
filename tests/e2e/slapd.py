"""A real OpenLDAP server for the ldap scenario's tests: Debian's ``slapd`` on 127.0.0.1.

Rules:
- One slapd per call of :func:`start_slapd`, in its own directory: a generated ``slapd.conf``
  (mdb database, the core/cosine/inetorgperson schemas, ACLs), a TLS certificate for 127.0.0.1
  and localhost from dexkit's own PKI, and the database loaded with ``slapadd`` from a generated
  LDIF: the suffix entry, then the given entries with a generated ``userPassword`` (``{SSHA}``,
  what ``slappasswd`` writes) for every person and for the bind account.
- It listens on ``ldap://`` (StartTLS available) and ``ldaps://``, on free ports.
- ACLs as a directory should have them for Dex: passwords can only be used to bind, and only the
  bind account (and each user for itself) may read entries. Anonymous searches find nothing.
- :meth:`Slapd.search` runs ``ldapsearch`` (LDAPS or StartTLS, the CA of this slapd only) and
  returns the entries; a failed bind raises :class:`LDAPError` with ldapsearch's result code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dexkit import files
from dexkit.sandbox.controlplane import free_ports
from dexkit.sandbox.process import ManagedProcess, start_process
from tests.e2e.tlsfiles import write_localhost_tls
from tests.ldif import Entry, dump_ldif, parse_ldif

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SCHEMAS = ("core", "cosine", "inetorgperson")
# Entries that log in or bind, and so get a generated password.
PASSWORD_CLASSES = frozenset({"inetorgperson", "simplesecurityobject"})


class LDAPError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"ldap result {code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Tools:
    slapd: Path
    slapadd: Path
    ldapsearch: Path


def find_tools() -> Tools | str:
    """The binaries, or why they are missing (for the skip/fail message)."""
    found = {}
    for name, where in (("slapd", "/usr/sbin"), ("slapadd", "/usr/sbin"), ("ldapsearch", None)):
        path = shutil.which(name) or (shutil.which(name, path=where) if where else None)
        if path is None:
            return (f"{name} not found: install Debian's slapd and ldap-utils "
                    "(DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils)")
        found[name] = Path(path)
    missing = [s for s in SCHEMAS if not (SCHEMA_DIR / f"{s}.schema").is_file()]
    if missing or not (MODULE_DIR / "back_mdb.la").exists():
        return f"slapd is installed but {SCHEMA_DIR} or {MODULE_DIR}/back_mdb is incomplete"
    return Tools(**found)


def ssha(password: str) -> str:
    """``{SSHA}`` as slappasswd writes it: SHA-1 of password + 8-byte salt, then the salt."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - LDAP's SSHA format
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass
class Slapd:
    process: ManagedProcess
    dir: Path
    tools: Tools
    suffix: str
    ldap_port: int
    ldaps_port: int
    ca_file: Path
    ca_pem: str
    passwords: dict[str, str] = field(default_factory=dict)  # DN -> plaintext

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def search(self, *, base: str, filter: str, attrs: tuple[str, ...] = (),
               bind_dn: str | None = None, password: str | None = None,
               starttls: bool = False, scope: str = "sub") -> list[Entry]:
        """``ldapsearch`` over StartTLS (``ldap://`` + ``-ZZ``) or LDAPS, as ``bind_dn``."""
        argv = [str(self.tools.ldapsearch), "-LLL", "-o", "ldif-wrap=no", "-x",
                "-H", self.ldap_url if starttls else self.ldaps_url]
        if starttls:
            argv.append("-ZZ")  # StartTLS, and fail if it does not succeed
        if bind_dn is not None:
            argv += ["-D", bind_dn, "-y", str(self._password_file(password or ""))]
        argv += ["-b", base, "-s", scope, filter, *attrs]
        env = dict(os.environ, LDAPTLS_CACERT=str(self.ca_file), LDAPTLS_REQCERT="demand",
                   LDAPCONF="/dev/null", LDAPRC="/dev/null")
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30,
                                check=False)
        if result.returncode not in (0, 32):  # 32: no such object, an empty answer
            raise LDAPError(result.returncode, result.stderr.strip())
        return parse_ldif(result.stdout)

    def _password_file(self, password: str) -> Path:
        # -y reads the password from a file: never on the command line, where ps shows it.
        path = self.dir / f"pw-{secrets.token_hex(4)}"
        files.atomic_write(path, password, files.PRIVATE)
        return path

    def stop(self) -> None:
        self.process.stop()


def _suffix_entry(suffix: str) -> Entry:
    first = suffix.split(",")[0]
    attr, _, value = first.partition("=")
    if attr.lower() != "dc":
        raise ValueError(f"the suffix must start with dc=: {suffix}")
    return Entry(suffix, {"objectClass": ["top", "dcObject", "organization"], "dc": [value],
                          "o": [value]})


def _config(layout: Path, suffix: str, reader_dn: str) -> str:
    includes = "".join(f"include {SCHEMA_DIR / s}.schema\n" for s in SCHEMAS)
    return (
        f"{includes}"
        f"pidfile {layout / 'slapd.pid'}\n"
        f"argsfile {layout / 'slapd.args'}\n"
        f"modulepath {MODULE_DIR}\n"
        "moduleload back_mdb\n"
        f"TLSCACertificateFile {layout / 'ca.pem'}\n"
        f"TLSCertificateFile {layout / 'cert.pem'}\n"
        f"TLSCertificateKeyFile {layout / 'key.pem'}\n"
        "database mdb\n"
        "maxsize 104857600\n"
        f'suffix "{suffix}"\n'
        f"directory {layout / 'data'}\n"
        "access to attrs=userPassword\n"
        "  by anonymous auth\n"
        "  by * none\n"
        "access to *\n"
        f'  by dn.exact="{reader_dn}" read\n'
        "  by self read\n"
        "  by * none\n"
    )


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def start_slapd(directory: Path, tools: Tools, *, suffix: str, entries: list[Entry],
                reader_dn: str, timeout: float = 30.0) -> Slapd:
    """Start slapd with ``entries`` below ``suffix``; ``reader_dn`` may read everything."""
    files.ensure_dir(directory)
    write_localhost_tls(directory)

    passwords: dict[str, str] = {}
    loaded = [_suffix_entry(suffix)]
    for entry in entries:
        copy = Entry(entry.dn, {k: list(v) for k, v in entry.attrs.items()})
        if copy.object_classes() & PASSWORD_CLASSES and not copy.get("userPassword"):
            passwords[copy.dn] = secrets.token_urlsafe(12)
            copy.add("userPassword", ssha(passwords[copy.dn]))
        loaded.append(copy)
    config = directory / "slapd.conf"
    files.atomic_write(config, _config(directory, suffix, reader_dn), files.PRIVATE)
    files.ensure_dir(directory / "data")
    ldif = directory / "data.ldif"
    files.atomic_write(ldif, dump_ldif(loaded), files.PRIVATE)
    added = subprocess.run([str(tools.slapadd), "-f", str(config), "-l", str(ldif)],
                           capture_output=True, text=True, timeout=60, check=False)
    if added.returncode != 0:
        raise RuntimeError(f"slapadd failed ({added.returncode}): {added.stderr.strip()}")

    ldap_port, ldaps_port = free_ports(2)
    urls = f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
    # -d keeps slapd in the foreground (256: one log line per operation, useful on failure).
    process = start_process(
        "slapd", [str(tools.slapd), "-d", "256", "-f", str(config), "-h", urls],
        directory / "slapd.log",
        lambda: _port_open(ldap_port) and _port_open(ldaps_port),
        timeout=timeout, cwd=directory, die_with_parent=True)
    return Slapd(process=process, dir=directory, tools=tools, suffix=suffix,
                 ldap_port=ldap_port, ldaps_port=ldaps_port, ca_file=directory / "ca.pem",
                 ca_pem=(directory / "ca.pem").read_text(), passwords=passwords)
