"""The base of every spec model, and the two kinds of field that leave a run's id alone.

A run id hashes the run's whole resolved spec (ablate.plan), so a field added to the spec would
change the id of every existing run, and `ablate run` would train all of them again. A field added
after result schema 2 is declared with `added_field`: at its default it is left out of the id (the
default is the behaviour the run had before the field existed), and only a run that sets another
value gets a new id. A field that cannot change a number (e.g. whether to download a missing
dataset) is declared with `not_in_id`: it is never part of the id.
"""

from __future__ import annotations

from typing import Any

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
    for name, info in type(model).model_fields.items():
        if name not in dumped:
            continue
        value = getattr(model, name)
        rule = (info.json_schema_extra or {}).get(ID_RULE) if isinstance(info.json_schema_extra, dict) else None
        if rule == NEVER or (rule == OMIT_AT_DEFAULT and value == info.get_default(call_default_factory=True)):
            del dumped[name]
        elif isinstance(value, BaseModel):
            id_data(value, dumped[name])
        elif isinstance(value, (list, tuple)):
            for item, item_dumped in zip(value, dumped[name]):
                if isinstance(item, BaseModel):
                    id_data(item, item_dumped)
    return dumped
