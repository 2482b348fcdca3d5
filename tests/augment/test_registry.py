"""Every operator of the grid vocabulary: implemented, configured from the spec, and honouring the contract."""

from __future__ import annotations

import pytest
import torch
from augment_helpers import generator, structured_images

from ablate.augment import OPERATOR_CLASSES, build_operator
from ablate.config import OPERATORS

DEVICE = torch.device("cpu")

def test_every_grid_operator_has_an_implementation() -> None:
    assert set(OPERATOR_CLASSES) == set(OPERATORS)
    for name in OPERATORS:
        assert build_operator(name).name == name
    with pytest.raises(ValueError, match="unknown operator 'blurr'"):
        build_operator("blurr")



@pytest.mark.parametrize("name", OPERATORS)
def test_contract_shape_dtype_range_seed_and_replay(name: str) -> None:
    op = build_operator(name)
    x = structured_images(32, seed=11)
    a, b = op(x, generator(1)), op(x, generator(1))
    assert a.shape == x.shape and a.dtype == torch.float32 and a.device == x.device
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()
    assert torch.equal(a, b)  # same seed, same output
    params = op.sample(32, 32, 32, generator(1), DEVICE)
    assert all(isinstance(v, torch.Tensor) and v.device == DEVICE for v in params.values())
    assert torch.equal(op.apply(x, params), a)  # replay from the parameters
    assert not torch.equal(a, x)  # the operator does something
    if name != "sobel":  # the only deterministic operator
        assert not torch.equal(a, op(x, generator(2)))
    assert torch.equal(x, structured_images(32, seed=11))  # the input is never modified in place


@pytest.mark.parametrize("name", OPERATORS)
def test_float64_and_non_square_inputs(name: str) -> None:
    op = build_operator(name)
    x = structured_images(4, size=32)[:, :, :, :24].contiguous()  # 32 high, 24 wide
    if name == "rotate":
        with pytest.raises(ValueError, match="square"):
            op(x, generator(0))
        return
    out = op(x, generator(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
