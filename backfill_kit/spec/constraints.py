"""What a spec field accepts beyond its type, written beside the field as `Annotated` metadata.

The spec's objects are plain dataclasses, so that a command served a checked spec from the
cache never imports pydantic. pydantic checks the file (spec/load.py) and reads these markers
through its `__get_pydantic_core_schema__` hook: the markers themselves import nothing, and
pydantic_core only when a file is being checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

__all__ = ["Bounds", "Check", "TaggedBy"]

# How pydantic checks every spec class: no unknown field, no inf or nan (every number of a
# spec ends up in date or time arithmetic). Read by pydantic from the class attribute.
CHECKED = {"extra": "forbid", "frozen": True, "allow_inf_nan": False}


class Check:
    """The value, once of the right type, is passed to `function`, which raises ValueError
    with the reason it is refused. Only a loaded file is checked: an object built or changed
    in Python (`dataclasses.replace`) is taken as given, as any dataclass is. With
    `before=True` the function sees the value as the file wrote it, before pydantic converts
    it: for a type pydantic would build from a value of another kind (a date from a number)."""

    def __init__(self, function: Callable[[Any], Any], *, before: bool = False) -> None:
        self.function = function
        self.before = before

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        wrap = (
            core_schema.no_info_before_validator_function
            if self.before
            else core_schema.no_info_after_validator_function
        )
        return wrap(self.function, handler(source))


class Bounds:
    """Bounds pydantic checks on a number or a length: ge, gt, le, min_length. On an optional
    field they bound the value when there is one. A bounded number is never a yes/no: YAML
    reads `yes` as true, which pydantic would take as 1."""

    def __init__(self, **bounds: float) -> None:
        self.bounds = bounds

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        schema: Any = handler(source)
        nullable = schema["type"] == "nullable"
        inner = schema["schema"] if nullable else schema
        inner.update(self.bounds)
        if inner["type"] in ("int", "float"):
            inner = core_schema.no_info_before_validator_function(_not_a_yes_or_no, inner)
            schema = {**schema, "schema": inner} if nullable else inner
        return schema  # type: ignore[no-any-return]


def _not_a_yes_or_no(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"write a number, not {str(value).lower()} (YAML reads yes, no, on and off as true or false)")
    return value


class TaggedBy:
    """A union of dataclasses told apart by one field, e.g. the warehouse's `backend`: the
    union member is chosen by the tag, so a problem names the fields of that member only."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from typing import get_type_hints

        from pydantic_core import core_schema

        # Each member's tag field is a Literal of its one value, e.g. `backend: Literal["duckdb"]`.
        choices = {get_type_hints(m)[self.tag].__args__[0]: handler.generate_schema(m) for m in source.__args__}
        return core_schema.tagged_union_schema(choices, discriminator=self.tag)
