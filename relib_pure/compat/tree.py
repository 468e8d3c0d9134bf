"""The NEEDED closure of a library as a tree, the way ``lddtree`` shows it.

Each library is expanded under the first object that needs it (depth
first); later references to it are leaves marked ``repeated``, so a tree of
a big closure stays readable and still shows every edge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from relib_pure.loader.resolve import locate_closure
from relib_pure.loader.search import Located
from relib_pure.model import LibraryInfo

__all__ = ["TreeNode", "dependency_tree", "render_tree"]


@dataclass(frozen=True)
class TreeNode:
    """One NEEDED entry: ``name`` as written, ``path`` where it was found
    (``None``: not found), ``how`` it was found (``rpath``, ``ld.so.cache``,
    ``loaded``...), ``repeated``: expanded elsewhere in the tree,
    ``error``: why a found dependency could not be read."""

    name: str
    path: str | None
    how: str | None
    children: tuple[TreeNode, ...] = ()
    repeated: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "how": self.how,
                "repeated": self.repeated, "error": self.error,
                "children": [c.to_dict() for c in self.children]}


def dependency_tree(info: LibraryInfo, *, ld_library_path: str | None = None) -> TreeNode:
    """The dependency tree of ``info``, searched as a fresh process would."""
    located, unreadable = locate_closure(info, ld_library_path=ld_library_path)
    by_requester: dict[str, list[Located]] = {}
    for loc in located:
        by_requester.setdefault(os.path.realpath(loc.required_by), []).append(loc)
    errors = {os.path.realpath(p): why for p, why in unreadable}
    expanded: set[str] = {os.path.realpath(info.path)}

    def children(path: str) -> tuple[TreeNode, ...]:
        out = []
        for loc in by_requester.get(path, []):
            if loc.path is None:
                out.append(TreeNode(loc.name, None, None))
                continue
            real = os.path.realpath(loc.path)
            if real in expanded:
                out.append(TreeNode(loc.name, loc.path, loc.how, repeated=True))
                continue
            expanded.add(real)
            out.append(TreeNode(loc.name, loc.path, loc.how, children(real),
                                error=errors.get(real)))
        return tuple(out)

    return TreeNode(os.path.basename(info.path), info.path, "path",
                    children(os.path.realpath(info.path)))


def render_tree(root: TreeNode, indent: str = "    ") -> str:
    """``lddtree``-style text: ``name => path``, one level of indent per depth."""
    lines = [str(root.path)]

    def walk(node: TreeNode, depth: int) -> None:
        where = node.path if node.path is not None else "not found"
        note = ""
        if node.repeated:
            note = " (see above)"
        elif node.error:
            note = f" (unreadable: {node.error})"
        lines.append(f"{indent * depth}{node.name} => {where}{note}")
        for child in node.children:
            walk(child, depth + 1)

    for child in root.children:
        walk(child, 1)
    return "\n".join(lines) + "\n"
