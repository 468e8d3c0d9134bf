"""``relib-pure codes``: the shipped list of codes is complete and docs/codes.md is current."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from relib_pure.cli.codes_cmd import code_tables, render_markdown
from relib_pure.cli.main import main
from relib_pure.compat import FINDING_CODES
from relib_pure.errors import ERROR_CODES
from relib_pure.runtime.report import CAUSES

CODE_RE = re.compile(r"^[a-z]+\.[a-z0-9]+(-[a-z0-9]+)*$")


def _string_constants(repo_root: Path) -> dict[str, list[str]]:
    """Every string literal in the package source -> where it occurs."""
    found: dict[str, list[str]] = {}
    for path in sorted((repo_root / "relib_pure").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.setdefault(node.value, []).append(f"{path.name}:{node.lineno}")
    return found


def test_json_lists_every_registered_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codes", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    assert {e["code"] for e in doc["findings"]} == set(FINDING_CODES)
    assert {e["code"] for e in doc["errors"]} == set(ERROR_CODES)
    assert {e["code"] for e in doc["unload_causes"]} == set(CAUSES)
    for section in ("findings", "errors", "unload_causes"):
        for entry in doc[section]:
            assert entry["meaning"].strip() and "\n" not in entry["meaning"], entry


def test_text_output_names_each_code_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codes"]) == 0
    words = [line.split()[0] for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ")]
    assert sorted(words) == sorted([*FINDING_CODES, *ERROR_CODES, *CAUSES])


def test_every_code_literal_in_the_source_is_registered(repo_root: Path) -> None:
    """A code-like literal in a registered namespace (``hazard.x``, ``load.y``) that
    no registry lists is a code emitted without documentation."""
    registered = set(FINDING_CODES) | set(ERROR_CODES)
    namespaces = {c.split(".", 1)[0] for c in registered}
    unregistered = {s: where for s, where in _string_constants(repo_root).items()
                    if CODE_RE.match(s) and s.split(".", 1)[0] in namespaces
                    and s not in registered}
    assert not unregistered


def test_finding_calls_use_registered_codes(repo_root: Path) -> None:
    literal_codes = set()
    for path in (repo_root / "relib_pure").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                literal_codes.add(node.args[0].value)
    assert literal_codes  # the scan found the checks' Finding(...) calls
    assert literal_codes <= set(FINDING_CODES), literal_codes - set(FINDING_CODES)


def test_docs_codes_md_is_current(repo_root: Path) -> None:
    page = repo_root / "docs" / "codes.md"
    assert page.read_text() == render_markdown(code_tables()), (
        "regenerate: relib-pure codes --markdown > docs/codes.md")
