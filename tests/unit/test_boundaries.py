"""The layering ARCHITECTURE.md promises, enforced rather than described."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dexkit"
# The kubectl credential plugin's lean path and the interactive login prompts write to the
# terminal themselves: they run where Rich (and so console.py) must not be imported.
MAY_WRITE = {"console.py", "__main__.py", "cli/__init__.py", "oidc/plugin.py", "oidc/session.py"}
PURE_CORE = ("issuer.py", "config/", "pki/", "render/")


@cache
def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(PACKAGE)), ast.parse(p.read_text()))
            for p in sorted(PACKAGE.rglob("*.py"))]


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_kube_imports_kubernetes() -> None:
    offenders = [name for name, tree in _modules()
                 if not name.startswith("kube/")
                 and any(i == "kubernetes" or i.startswith("kubernetes.") for i in _imports(tree))]
    assert offenders == []


def test_only_the_console_and_the_lean_paths_write_to_the_terminal() -> None:
    offenders = []
    for name, tree in _modules():
        if name in MAY_WRITE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func == "print" or func in ("sys.stdout.write", "sys.stderr.write"):
                    offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_the_core_does_no_network_or_processes() -> None:
    banned = {"httpx", "socket", "subprocess", "urllib.request", "kubernetes", "dexkit.kube",
              "dexkit.oidc", "dexkit.sandbox"}
    offenders = [f"{name}: {sorted(_imports(tree) & banned)}" for name, tree in _modules()
                 if name.startswith(PURE_CORE) and _imports(tree) & banned]
    assert offenders == []


def test_the_issuer_parse_imports_only_the_standard_library() -> None:
    # dexkit token's login path parses its --issuer with it: no msgspec, yaml or cryptography.
    tree = next(t for name, t in _modules() if name == "issuer.py")
    assert not {i for i in _imports(tree) if i.startswith("dexkit") or i.split(".")[0] in
                ("msgspec", "yaml", "cryptography", "httpx", "jinja2", "rich", "typer")}


# The layer table of docs/architecture.md, read from the page itself so the two cannot drift.
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
LAYERS = ("base", "pure core", "edges", "use cases", "entry")  # lowest first


def _dotted(relative: str) -> str:
    """``oidc/plugin.py`` -> ``dexkit.oidc.plugin``; ``oidc/__init__.py`` -> ``dexkit.oidc``."""
    parts = ["dexkit", *Path(relative).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _known_modules() -> frozenset[str]:
    return frozenset({_dotted(name) for name, _ in _modules()})


def _layer_table() -> dict[str, str]:
    """Each module or package the table names (``dexkit.sandbox.stack``, ``dexkit.render``)
    -> its layer. Backticked words that name no module (``cli/options.project_config``) are
    prose, not entries."""
    known = _known_modules()
    table: dict[str, str] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] not in LAYERS:
            continue
        for word in re.findall(r"`([^`]+)`", cells[1]):
            name = "dexkit" if word == "dexkit" else "dexkit." + word.strip("/").replace("/", ".")
            if name in known:
                table[name] = cells[0]
    return table


def _layer_of(module: str, table: dict[str, str]) -> str | None:
    """The layer of the longest table entry that is ``module`` or a package above it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return table[".".join(parts[:end])]
    return None


def _own_imports(module: str, tree: ast.Module, is_package: bool) -> set[str]:
    """dexkit's own modules that ``tree`` imports, whatever the form: ``import dexkit.a.b``,
    ``from dexkit import a`` (a module, or a name of the package), ``from dexkit.a import b``,
    relative imports, and imports inside functions. ``if TYPE_CHECKING:`` imports count too:
    a type named from a layer above is a dependency on it."""
    known = _known_modules()
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "dexkit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "dexkit":
                continue
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known
                          else source)
    return found


def test_the_layer_table_names_every_module() -> None:
    table = _layer_table()
    assert sorted(m for m in _known_modules() if _layer_of(m, table) is None) == []


def test_the_layer_table_resolves_every_import_form() -> None:
    # The forms the exact-name checks above let through: each must reach the module it names.
    tree = ast.parse("from dexkit import kube\nimport dexkit.oidc.session\n"
                     "from dexkit.sandbox import process\nfrom . import errors\n"
                     "def f():\n    from dexkit.render.dex import NAME\n")
    assert _own_imports("dexkit.artefacts", tree, is_package=False) == {
        "dexkit.kube", "dexkit.oidc.session", "dexkit.sandbox.process", "dexkit.errors",
        "dexkit.render.dex"}


def test_every_module_imports_only_its_layer_or_below() -> None:
    table = _layer_table()
    offenders = []
    for name, tree in _modules():
        module = _dotted(name)
        here = LAYERS.index(_layer_of(module, table) or "entry")
        for imported in sorted(_own_imports(module, tree, name.endswith("__init__.py"))):
            layer = _layer_of(imported, table)
            if layer is not None and LAYERS.index(layer) > here:
                offenders.append(f"{module} ({LAYERS[here]}) -> {imported} ({layer})")
    assert offenders == []
