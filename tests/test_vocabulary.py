"""The names a grid file may use are written once in ablate.config and agree with the registries of
the implementations (which import torch, so the grid validator cannot read them)."""

import typing

from ablate.config import ARCHS, DATASETS, METHOD_SPECS, OPERATORS, OPTIMIZERS
from ablate.config.specs import AugmentSpec, DatasetSpec, ModelSpec, TrainSpec


def literal_values(model, field: str) -> tuple:
    annotation = model.model_fields[field].annotation
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    return typing.get_args(annotation)


def test_the_spec_fields_accept_exactly_the_vocabulary():
    assert literal_values(AugmentSpec, "ops") == OPERATORS
    assert literal_values(DatasetSpec, "name") == DATASETS
    assert literal_values(ModelSpec, "arch") == ARCHS
    assert literal_values(TrainSpec, "optimizer") == OPTIMIZERS


def test_every_registry_names_the_vocabulary_and_nothing_else():
    from ablate.augment.registry import OPERATOR_CLASSES
    from ablate.data import LOADERS, loader_of
    from ablate.models import BACKBONES

    assert tuple(OPERATOR_CLASSES) == OPERATORS
    assert tuple(LOADERS) == DATASETS
    assert tuple(BACKBONES) == ARCHS
    assert all(callable(loader_of(name)) for name in DATASETS)


def test_method_specs_name_themselves():
    for name, spec in METHOD_SPECS.items():
        assert spec().name == name
        assert spec.label
