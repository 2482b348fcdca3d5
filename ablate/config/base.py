"""The base of every spec model, and the two kinds of field that leave a run's id alone.

A run id hashes the run's whole resolved spec (ablate.plan), so a field added to the spec would
change the id of every existing run, and `ablate run` would train all of them again. A field added
after result schema 2 is declared with `added_field`: at its default it is left out of the id (the
default is the behaviour the run had before the field existed), and only a run that sets another
value gets a new id. A field that cannot change a number (e.g. whether to download a missing
dataset) is declared with `not_in_id`: it is never part of the id.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field

ID_RULE = "run_id"  # key in a field's json_schema_extra
OMIT_AT_DEFAULT = "omit_at_default"
NEVER = "never"


class StrictModel(BaseModel):
    """Unknown keys are refused: a misspelt field must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def added_field(default: Any = ..., **kwargs: Any) -> Any:
    """A field added after result schema 2: part of a run's id only when it is not at its default."""
    return Field(default, json_schema_extra={ID_RULE: OMIT_AT_DEFAULT}, **kwargs)


def not_in_id(default: Any = ..., **kwargs: Any) -> Any:
    """A field that changes no number of a run (how, not what): never part of its id."""
    return Field(default, json_schema_extra={ID_RULE: NEVER}, **kwargs)


def id_data(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """`dumped` (model.model_dump(mode="json")) without the fields the id leaves out, recursively.

    Changes `dumped` in place and returns it.
    """
    for name, (rule, default) in _id_rules(type(model)).items():
        if name not in dumped:
            continue
        value = getattr(model, name)
        if rule == NEVER or (rule == OMIT_AT_DEFAULT and value == default):
            del dumped[name]
        elif isinstance(value, BaseModel):
            id_data(value, dumped[name])
        elif isinstance(value, (list, tuple)):
            for item, item_dumped in zip(value, dumped[name]):
                if isinstance(item, BaseModel):
                    id_data(item, item_dumped)
    return dumped


def added_fields(model_class: type[BaseModel]) -> list[str]:
    """The fields of `model_class` declared with `added_field` or `not_in_id` (newer than result schema 2)."""
    return [name for name, (rule, _) in _id_rules(model_class).items() if rule is not None]


@cache
def _id_rules(model_class: type[BaseModel]) -> dict[str, tuple[str | None, Any]]:
    """The fields `id_data` must look at, each with its id rule and default: those with a rule, and those that
    may hold a model with rules. Read once per class: pydantic's get_default inspects the default factory's
    signature on every call, and walking every field of 10,000 specs took seconds."""
    rules = {}
    for name, info in model_class.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        rule = extra.get(ID_RULE)
        if rule == OMIT_AT_DEFAULT:
            rules[name] = (rule, info.get_default(call_default_factory=True))
        elif rule is not None or any(_id_rules(held) for held in _models_in(info.annotation)):
            rules[name] = (rule, None)
    return rules


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes a field's type names (through unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [held for argument in get_args(annotation) for held in _models_in(argument)]
