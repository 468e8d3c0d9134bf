"""Check results for CI: SARIF 2.1.0 (code scanning) and GitHub workflow annotations.

Both take the same input, one :class:`Outcome` per library or unreadable
path, and report errors and warnings only: info findings (``resolve.ok``,
``relib.not-relib``) are verdict details, not things to fix.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "to_sarif", "github_lines", "SARIF_SCHEMA"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning"}


@dataclass(frozen=True)
class Outcome:
    """One library's result: ``display`` (``x.whl!pkg/m.so`` for a wheel
    member), ``file`` (the file on disk a reviewer opens: the wheel for a
    member), and either a check ``report`` dict or an ``error`` dict."""

    display: str
    file: str
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def problems(self) -> list[tuple[str, str, str]]:
        """``(level, code, message)`` of each error and warning."""
        if self.error is not None:
            return [("error", str(self.error["code"]), str(self.error["message"]))]
        assert self.report is not None
        return [(f["severity"], f["code"], f["message"]) for f in self.report["findings"]
                if f["severity"] in _LEVEL]


def _uri(path: str) -> str:
    """Relative to the working directory when inside it (code scanning maps
    those to the repository), else an absolute ``file://`` URI."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    if not rel.startswith(os.pardir):
        return urllib.parse.quote(rel.replace(os.sep, "/"))
    return "file://" + urllib.parse.quote(full)


def to_sarif(outcomes: list[Outcome], meanings: dict[str, str], version: str) -> dict[str, Any]:
    """One SARIF 2.1.0 log with one run; ``meanings`` describes each code (rules)."""
    rule_ids: list[str] = []
    results = []
    for o in outcomes:
        for level, code, message in o.problems():
            if code not in rule_ids:
                rule_ids.append(code)
            text = message if o.display == o.file else f"{o.display}: {message}"
            results.append({
                "ruleId": code,
                "ruleIndex": rule_ids.index(code),
                "level": _LEVEL[level],
                "message": {"text": text},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(o.file)}}}],
            })
    rules = [{"id": code, "name": code,
              "shortDescription": {"text": meanings.get(code, code)},
              "helpUri": "https://github.com/xxshady/relib"}
             for code in rule_ids]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "relib-pure", "version": version,
                                "informationUri": "https://github.com/xxshady/relib",
                                "rules": rules}},
            "results": results,
        }],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_lines(outcomes: list[Outcome]) -> list[str]:
    """``::error file=...,title=CODE::message`` workflow commands, one per problem."""
    lines = []
    for o in outcomes:
        for level, code, message in o.problems():
            text = message if o.display == o.file else f"{o.display}: {message}"
            lines.append(f"::{level} file={_escape_property(o.file)},"
                         f"title={_escape_property(code)}::{_escape_data(text)}")
    return lines
