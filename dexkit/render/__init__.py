"""Pure rendering: Config in, text out. Templates live in ``templates/`` as data.

Nothing here touches the network or the cluster; commands decide where the text goes.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import jinja2

from dexkit.resources import templates_dir


class _Dumper(yaml.SafeDumper):
    """Block-style YAML whose multi-line strings (PEM, config files) stay readable."""


# Line breaks YAML knows besides \n and \r. PyYAML writes them raw into plain, quoted and
# block scalars, and reading them back folds them into a space (NEL) or a newline: only a
# double-quoted scalar, where they become escapes, keeps the string as it was.
_OTHER_BREAKS = ("\x85", "\u2028", "\u2029")


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style: str | None = "|" if "\n" in data else None
    if any(ch in data for ch in _OTHER_BREAKS) or "\r" in data:
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML for ``value``, each line indented by ``indent`` spaces after the first."""
    text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1000).rstrip("\n")
    return text.replace("\n", "\n" + " " * indent) if indent else text


# Plain scalars only from this alphabet, and never a word some YAML parser reads as a bool or
# null: Go's yaml.v2 (Dex, kubeadm) still takes y/n/on/off as booleans, PyYAML does not.
_PLAIN = re.compile(r"^(?!---)[A-Za-z0-9_./@$-][A-Za-z0-9_./@$:+=,-]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def scalar(value: Any) -> str:
    """A YAML scalar for ``value``: plain when every parser reads it back unchanged, else quoted.

    Strings that could be misread (numbers, booleans, ``key: value`` look-alikes) are written
    as JSON strings, which YAML reads as double-quoted scalars.
    """
    if not isinstance(value, str):
        return json.dumps(value)
    plain = (bool(_PLAIN.match(value)) and value != "-" and value.lower() not in _YAML_WORDS
             and not value.endswith(":") and yaml.safe_load(value) == value)
    return value if plain else json.dumps(value)


def dump_documents(documents: list[Any]) -> str:
    return "".join(f"---\n{to_yaml(doc)}\n" for doc in documents)


@cache
def environment() -> jinja2.Environment:
    # Imported on first use: dexkit.yaml (dexkit.render.projectfile) and the YAML helpers above
    # need no Jinja, and 'dexkit init' never pays for its import.
    import jinja2  # noqa: PLC0415

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders YAML, never HTML
    )
    env.filters["to_yaml"] = to_yaml
    # JSON is valid YAML: a safe way to put any scalar into a template, quoted as needed.
    env.filters["q"] = lambda v: json.dumps(v)
    env.filters["scalar"] = scalar
    return env


def render_template(name: str, /, **context: Any) -> str:
    return environment().get_template(name).render(**context)
