"""The shipped JSON Schemas: valid Draft 2020-12, one ``$id`` scheme, one per ``--json`` command."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema

ID_BASE = "https://relib-pure.invalid/schemas/"


def _schemas() -> dict[str, dict]:
    folder = resources.files("relib_pure").joinpath("schemas")
    return {f.name: json.loads(f.read_text()) for f in folder.iterdir()
            if f.name.endswith(".json")}


def test_every_schema_is_valid_with_one_id_scheme() -> None:
    schemas = _schemas()
    assert {"check.json", "inspect.json", "run.json", "tree.json"} <= set(schemas)
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["$id"] == ID_BASE + name, name
        assert schema["title"].startswith("relib-pure "), name


def test_elf_and_pe_symbols_share_one_definition() -> None:
    """ELF and PE libraries validate against the same symbol shapes: PE
    specifics live under ``pe`` only."""
    library = _schemas()["inspect.json"]["$defs"]["library"]["properties"]
    assert library["exports"]["items"] == {"$ref": "#/$defs/symbol"}
    assert library["imports"]["items"] == {"$ref": "#/$defs/importedSymbol"}
