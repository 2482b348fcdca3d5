"""Each method's own settings: one spec model per method, chosen by its ``name`` (a discriminated union).

A run spec's ``method`` is one of these models. In a grid file it is written either as a bare name
(``method: simclr``: that method with its defaults) or as a mapping (``method: {name: simclr,
temperature: 0.2}``); an axis may vary it (``method: [simclr, supervised]``) or one of its fields
(``method.temperature: [0.1, 0.5]``). The implementations live in ``ablate/methods/<name>.py``
(registry: `ablate.methods.METHODS`); these models live apart from them because validating a grid
file must not import torch (a test checks that the two lists of names agree).

A new method: its spec model here (``name`` a one-value Literal, ``label`` for reports, its fields
with the published defaults and their units), one line in `METHOD_SPECS`, its implementation file.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field

from ablate.config.base import StrictModel


class MethodSpec(StrictModel):
    """What every method's settings have: its name, and how reports call it."""

    label: ClassVar[str]
    name: str


class SimCLRSpec(MethodSpec):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between the projections of two views."""

    label: ClassVar[str] = "SimCLR"
    name: Literal["simclr"] = "simclr"
    temperature: float = Field(0.5, gt=0, le=100, description="NT-Xent temperature (0.5 on CIFAR in the paper, B.9)")


class SupervisedSpec(MethodSpec):
    """The supervised baseline of Table 1: the same encoder, a linear classifier, cross-entropy on labels."""

    label: ClassVar[str] = "Supervised"
    name: Literal["supervised"] = "supervised"


# The grid vocabulary of methods, in the order reports list them.
METHOD_SPECS: dict[str, type[MethodSpec]] = {
    "simclr": SimCLRSpec,
    "supervised": SupervisedSpec,
}
DEFAULT_METHOD = "simclr"

# The union pydantic validates `method` against, derived from the registry above (so one line adds a method).
MethodChoice = Annotated[Union[tuple(METHOD_SPECS.values())], Field(discriminator="name")]  # type: ignore[valid-type]


def method_from_name(value: Any) -> Any:
    """A bare method name stands for that method with its defaults: 'simclr' -> {'name': 'simclr'}."""
    return {"name": value} if isinstance(value, str) else value


def method_fields() -> list[str]:
    """Every field any method has besides its name (the `method.FIELD` axes), in registry order."""
    fields: list[str] = []
    for spec in METHOD_SPECS.values():
        fields += [name for name in spec.model_fields if name != "name" and name not in fields]
    return fields
