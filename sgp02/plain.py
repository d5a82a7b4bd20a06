"""Kernel values to plain data (what ``json`` writes) and back, exactly: ``load(T, dump(T, x)) == x``.

The kernel's values are frozen dataclasses of str, int, bool, enums, datetimes, bytes, tuples, optional values and
unions of dataclasses. Both directions are driven by the type hints, so a field added to a value travels without a
second edit here; a type this module does not know raises TypeError on the way out (never a silent loss).

Rules, chosen so that the round trip is exact:

- a dataclass is an object of its fields by name; an Enum its value; bytes base64 (the EIS's signed XML is bytes);
- a datetime ``isoformat()`` (microseconds and the offset, or none for a naive one, survive ``fromisoformat``);
- ``tuple[X, ...]`` and ``tuple[A, B]`` are lists;
- a union of several dataclasses (``Key | KeysetCertificate``) is tagged: ``{"type": "<class name>", ...fields}``.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

_SCALARS = (str, int, bool, float)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_options(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def dump(hint: Any, value: Any) -> Any:
    """``value`` (of type ``hint``) as plain data."""
    if value is None:
        return None
    options = _union_options(hint)
    if options is not None:
        candidates = [o for o in options if o is not type(None)]
        if len(candidates) == 1:
            return dump(candidates[0], value)
        chosen = type(value)
        if chosen not in candidates or not dataclasses.is_dataclass(chosen):
            raise TypeError(f"{chosen.__name__} is not one of the dataclasses of {hint}")
        return {"type": chosen.__name__, **dump(chosen, value)}
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return [dump(args[0], item) for item in value]
        return [dump(arg, item) for arg, item in zip(args, value, strict=True)]
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return {f.name: dump(hints[f.name], getattr(value, f.name)) for f in dataclasses.fields(hint)}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value).value
    if hint is datetime:
        return value.isoformat()
    if hint is bytes:
        return base64.b64encode(value).decode("ascii")
    if hint in _SCALARS:
        return value
    raise TypeError(f"no plain form for {hint!r}")


def load(hint: Any, data: Any) -> Any:
    """The value of type ``hint`` that :func:`dump` turned into ``data``."""
    if data is None:
        return None
    options = _union_options(hint)
    if options is not None:
        candidates = [o for o in options if o is not type(None)]
        if len(candidates) == 1:
            return load(candidates[0], data)
        by_name = {c.__name__: c for c in candidates}
        fields = dict(data)
        return load(by_name[fields.pop("type")], fields)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(load(args[0], item) for item in data)
        return tuple(load(arg, item) for arg, item in zip(args, data, strict=True))
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{hint.__name__} has no field {', '.join(sorted(unknown))}")
        return hint(**{name: load(hints[name], item) for name, item in data.items()})
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(data)
    if hint is datetime:
        return datetime.fromisoformat(data)
    if hint is bytes:
        return base64.b64decode(data, validate=True)
    if hint in _SCALARS:
        return data
    raise TypeError(f"no plain form for {hint!r}")
