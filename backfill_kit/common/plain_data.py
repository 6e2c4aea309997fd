"""Frozen dataclasses as plain data (JSON's values) and back, driven by their fields' types.

For a cache that holds data, never code: `from_data` builds only the dataclass it is asked for,
field by field from the types its fields declare (str, int, float, bool, None, date, Path,
Enum, Literal, unions, tuple[X, ...], dict[str, X] and nested dataclasses), and refuses
anything else with `NotThisShape`: a missing or extra field, a value of another type, a
date not written YYYY-MM-DD. Nothing in the data names a class or a function: the caller
names the one class it expects. A builder per type is made once and kept, so a spec of a
few hundred values is rebuilt in well under a millisecond.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import date
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from backfill_kit.common.arguments import iso_date

__all__ = ["NotThisShape", "from_data", "to_data"]

T = TypeVar("T")
Builder = Callable[[Any], Any]


class NotThisShape(ValueError):
    """The data is not what the class's fields declare."""


def to_data(value: Any) -> Any:
    """A dataclass (and what its fields hold) as JSON's values; TypeError for anything
    `from_data` could not build again."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in fields(value)}
    if value is None or type(value) in (str, int, float, bool):
        return value
    if type(value) is date:  # a datetime is a date too, and would lose its time
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return to_data(value.value)
    if isinstance(value, tuple):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping) and all(type(k) is str for k in value):
        return {k: to_data(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} has no plain form")


def from_data(cls: type[T], data: Any, *, mapping: Callable[[dict[str, Any]], Any] = dict) -> T:
    """An instance of the dataclass `cls` built from `data` as `to_data` wrote it; its mappings
    made by `mapping` (a frozen mapping, say). NotThisShape when the data does not fit."""
    try:
        return _builder(cls, mapping)(data)  # type: ignore[no-any-return, arg-type]
    except NotThisShape:
        raise
    except (TypeError, ValueError) as exc:  # a class's own check (__post_init__) refused the values
        raise NotThisShape(str(exc)) from None


@cache
def _builder(hint: Any, mapping: Callable[[dict[str, Any]], Any]) -> Builder:
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin, args = get_origin(hint), get_args(hint)
    if origin is typing.Annotated:  # a field's constraints (spec/constraints.py): checked when a file is
        return _builder(args[0], mapping)
    if origin is typing.Literal:
        return _one_of(args)
    if origin in (typing.Union, types.UnionType):
        return _first_that_fits([_builder(a, mapping) for a in args])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _tuple_of(_builder(args[0], mapping))
    if origin is dict and args[0] is str:
        return _mapping_of(_builder(args[1], mapping), mapping)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum(hint)
    if isinstance(hint, type) and is_dataclass(hint):
        return _dataclass(hint, mapping)
    raise TypeError(f"no plain form for {hint!r}")  # a model change: tests/test_spec_cache.py says so


def _fail(what: str, value: Any) -> NotThisShape:
    return NotThisShape(f"expected {what}, got {type(value).__name__}")


def _exactly(kind: type) -> Builder:
    def build(value: Any) -> Any:
        if type(value) is not kind:  # bool is an int, and an int is no text
            raise _fail(kind.__name__, value)
        return value

    return build


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise _fail("a number", value)
    return float(value)


def _none(value: Any) -> None:
    if value is not None:
        raise _fail("null", value)


def _date(value: Any) -> date:
    if type(value) is not str:
        raise _fail("a date", value)
    return iso_date(value)  # YYYY-MM-DD only; ValueError otherwise


def _path(value: Any) -> Path:
    if type(value) is not str or not value:
        raise _fail("a path", value)
    return Path(value)


_SCALARS: dict[Any, Builder] = {
    str: _exactly(str),
    int: _exactly(int),
    bool: _exactly(bool),
    float: _float,
    type(None): _none,
    date: _date,
    Path: _path,
}


def _one_of(choices: tuple[Any, ...]) -> Builder:
    def build(value: Any) -> Any:
        if not any(type(value) is type(c) and value == c for c in choices):
            raise NotThisShape(f"expected one of {choices}, got {value!r}")
        return value

    return build


def _first_that_fits(options: list[Builder]) -> Builder:
    def build(value: Any) -> Any:
        for option in options:
            try:
                return option(value)
            except NotThisShape:
                continue
        raise NotThisShape(f"{type(value).__name__} fits none of the union's types")

    return build


def _tuple_of(item: Builder) -> Builder:
    def build(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _fail("a list", value)
        return tuple(item(v) for v in value)

    return build


def _mapping_of(item: Builder, mapping: Callable[[dict[str, Any]], Any]) -> Builder:
    def build(value: Any) -> Any:
        if type(value) is not dict:  # JSON's keys are always text
            raise _fail("a mapping", value)
        return mapping({k: item(v) for k, v in value.items()})

    return build


def _enum(cls: type[Enum]) -> Builder:
    by_value = {member.value: member for member in cls}

    def build(value: Any) -> Enum:
        try:
            return by_value[value]
        except (KeyError, TypeError):  # unknown, or unhashable (a list)
            raise NotThisShape(f"not a {cls.__name__}: {value!r}") from None

    return build


def _dataclass(cls: type, mapping: Callable[[dict[str, Any]], Any]) -> Builder:
    if any(not f.init for f in fields(cls)):
        raise TypeError(f"{cls.__name__} has a field its constructor does not take")
    names = frozenset(f.name for f in fields(cls))
    built: dict[str, Builder] = {}  # each field's, made on first use: a class may refer to itself

    def build(value: Any) -> Any:
        if type(value) is not dict or value.keys() != names:
            raise NotThisShape(f"expected the fields of {cls.__name__}")
        if not built:
            built.update((name, _builder(hint, mapping)) for name, hint in _field_types(cls).items())
        return cls(**{name: built[name](v) for name, v in value.items()})

    return build


def _field_types(cls: type) -> dict[str, Any]:
    """Each field's declared type. Under `from __future__ import annotations` they are the
    class's own source text: evaluated in one go per class, 3x quicker than get_type_hints."""
    declared = [f.type for f in fields(cls)]
    texts = [t for t in declared if isinstance(t, str)]
    evaluated = iter(eval(f"({', '.join(texts)},)", vars(sys.modules[cls.__module__]), vars(cls)) if texts else ())
    return {f.name: next(evaluated) if isinstance(f.type, str) else f.type for f in fields(cls)}
