"""No import runs upward: the layering of the packages (README, Layout), checked on every import statement.

    sgp02/ (kernel)      keys (the ECASD certificate check, sgp02.ecasd)
    keys/                nothing of the project
    persistence/         sgp02
    ota/                 keys, sgp02; no I/O (sockets, threads, HTTP)
    smsr_core/           sgp02, persistence, keys, ota; nothing of esx/, spyne, zeep or HTTP
    smdp_core/           the same, and not smsr_core
    euicc_sim/           keys, ota, sgp02: the card speaks the wire, it knows no core and no esx/
    esx/                 anything (the entry points on top)

Imports inside functions count as much as those at the top of a module.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"sgp02", "keys", "persistence", "ota", "smsr_core", "smdp_core", "euicc_sim", "esx"}
HTTP_AND_SOAP = {"spyne", "zeep", "requests", "gunicorn", "http", "urllib", "wsgiref", "esx"}
# A lock is not I/O (ota.saip guards its compiled schema with one); sockets, event loops and processes are.
IO = {"socket", "select", "selectors", "asyncio", "subprocess", "smpplib.client"}

ALLOWED = {
    "sgp02": {"sgp02", "keys"},
    "keys": {"keys"},
    "persistence": {"persistence", "sgp02"},
    "ota": {"ota", "keys", "sgp02"},
    "smsr_core": {"smsr_core", "sgp02", "persistence", "keys", "ota"},
    "smdp_core": {"smdp_core", "sgp02", "persistence", "keys", "ota"},
    "euicc_sim": {"euicc_sim", "keys", "ota", "sgp02"},
    "esx": PROJECT,
}
FORBIDDEN_THIRD_PARTY = {
    "sgp02": HTTP_AND_SOAP | IO | {"sqlalchemy", "lxml"},
    "keys": HTTP_AND_SOAP | IO | {"sqlalchemy"},
    "persistence": HTTP_AND_SOAP,
    "ota": HTTP_AND_SOAP | IO | {"sqlalchemy"},
    "smsr_core": HTTP_AND_SOAP | IO,
    "smdp_core": HTTP_AND_SOAP | IO,
    "euicc_sim": {"spyne", "zeep", "requests", "gunicorn", "sqlalchemy"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``; relative imports are resolved to the package."""
    tree = ast.parse(path.read_text(), str(path))
    package = path.relative_to(REPO).parent.parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def violations(package: str) -> list[str]:
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(REPO)}:{line} imports {module}"
            if top in PROJECT and top not in ALLOWED[package]:
                out.append(where)
            forbidden = FORBIDDEN_THIRD_PARTY.get(package, set())
            if top in forbidden or module in forbidden:
                out.append(where)
    return sorted(set(out))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_runs_upward(package):
    assert (REPO / package).is_dir()
    assert violations(package) == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule can fail: a core module importing esx/ is reported, relative imports resolved."""
    fake = tmp_path / "smdp_core"
    fake.mkdir()
    (fake / "bad.py").write_text("from esx import codes\nfrom .x import y\n\ndef f():\n    import smsr_core.eis\n"
                                 "    import requests\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("smdp_core") == [
        "smdp_core/bad.py:1 imports esx", "smdp_core/bad.py:1 imports esx.codes",
        "smdp_core/bad.py:5 imports smsr_core.eis", "smdp_core/bad.py:6 imports requests",
    ]
