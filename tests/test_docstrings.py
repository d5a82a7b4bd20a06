"""Documentation names what exists: every :class:/:func:/:meth:/:mod: reference and every dotted ``package.module.name``
in the source of esx's packages resolves to a module, class, function or attribute of this checkout."""
from __future__ import annotations

import builtins
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sgp02", "keys", "persistence", "ota", "smsr_core", "smdp_core", "euicc_sim", "esx")
_P = "|".join(PACKAGES)
REFERENCE = re.compile(
    r":(?:class|func|meth|mod|data|attr|exc):`~?(?P<role>[A-Za-z_][\w.]*)`"  # Sphinx roles
    rf"|``(?P<literal>(?:{_P})\.[A-Za-z_][\w.]*)``"  # a dotted name in double backquotes
    rf"|\b(?P<prose>(?:{_P})\.[a-z_]\w*\.[A-Za-z_][\w.]*\w)"  # package.module.name in prose
)
SKIP_MODULES = {"persistence.migrations.env"}  # runs only inside Alembic


def resolves(name: str, module: types.ModuleType) -> bool:
    parts = name.split(".")
    if len(parts) == 1:  # a name of this module, one of its classes' members, or a builtin
        return (hasattr(builtins, name) or hasattr(module, name)
                or any(hasattr(c, name) for _, c in inspect.getmembers(module, inspect.isclass)))
    if parts[0] not in PACKAGES:  # relative to this module: Class.method
        obj = module
    else:
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            parts = parts[i:]
            break
        else:
            return False
    for part in parts:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def unresolved(path: Path, root: Path = REPO) -> list[str]:
    name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    module = importlib.import_module(name)
    text = path.read_text()
    out = []
    for m in REFERENCE.finditer(text):
        ref = (m.group("role") or m.group("literal") or m.group("prose")).rstrip(".")
        if text[m.end():m.end() + 1] == "(":
            continue  # a call written out (``keys.enc.hex()``): a value, not a name
        if m.group("prose") and text[m.start() - 1:m.start()] in "\"'" and text[m.end():m.end() + 1] in "\"'":
            continue  # a string value in code (a ContextVar's name), not a reference
        if not resolves(ref, module):
            out.append(f"{path.relative_to(root)}:{text[:m.start()].count(chr(10)) + 1}: {ref}")
    return out


def modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if ".".join(path.relative_to(REPO).with_suffix("").parts) not in SKIP_MODULES:
                yield path


@pytest.mark.parametrize("package", PACKAGES)
def test_every_reference_in_the_source_names_something_that_exists(package):
    found = [bad for path in modules() if path.relative_to(REPO).parts[0] == package for bad in unresolved(path)]
    assert found == []


def test_a_reference_to_nothing_is_reported():
    module = importlib.import_module("smsr_core.platform")
    assert resolves("smsr_core.platform.Platform", module) and resolves("Platform.accept", module)
    assert resolves("persistence.engine", module) and resolves("ValueError", module)
    assert not resolves("smsr_core.platform.Engine", module)
    assert not resolves("smdp_core.download.Platform", module)
    assert not resolves("esx.es3.client.NoGateway", module)
