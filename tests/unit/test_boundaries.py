"""The layering ARCHITECTURE.md promises, enforced rather than described."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dexkit"
# The kubectl credential plugin's lean path and the interactive login prompts write to the
# terminal themselves: they run where Rich (and so console.py) must not be imported.
MAY_WRITE = {"console.py", "__main__.py", "cli/__init__.py", "oidc/plugin.py", "oidc/session.py"}
PURE_CORE = ("issuer.py", "config/", "pki/", "render/")


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
