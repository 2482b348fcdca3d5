"""The base of every spec model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are refused: a misspelt field must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
