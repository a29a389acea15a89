"""Positions in YAML text, for edits that leave every other byte of a file as it was.

PyYAML's nodes carry marks (character offsets) into the text they were composed from; these
helpers turn them into whole lines, so an edit replaces or inserts lines and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def line_after(text: str, index: int) -> int:
    """The index just past the newline that ends the line holding ``index``."""
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def last_end(node: yaml.Node) -> int:
    """Where the last scalar inside ``node`` ends (collections' own end marks overshoot)."""
    if isinstance(node, yaml.ScalarNode):
        return int(node.end_mark.index)
    children: Iterable[yaml.Node]
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = node.value
    return max((last_end(child) for child in children), default=int(node.end_mark.index))
