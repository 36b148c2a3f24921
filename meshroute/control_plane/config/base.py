"""What every config model shares: camelCase in YAML, unknown fields refused, frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid",  # a misspelt field that silently did nothing would be worse
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,  # field docs become schema descriptions
    )
