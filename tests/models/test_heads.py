"""SimCLR's projection heads (Figure 8): none, linear, mlp — sizes, parameter counts and outputs by hand."""

import pytest
import torch
from torch import nn

from ablate.models.heads import mlp, projection_head

FEATURES, HIDDEN, OUT = 12, 20, 6


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("kind", "hidden", "expected"), [
    ("none", None, 0),
    ("linear", None, FEATURES * OUT + OUT),  # W and b
    # W1 (no bias: batch norm follows), BN's scale and shift, W2 and b2; hidden = feature size by default
    ("mlp", None, FEATURES * FEATURES + 2 * FEATURES + FEATURES * OUT + OUT),
    ("mlp", HIDDEN, FEATURES * HIDDEN + 2 * HIDDEN + HIDDEN * OUT + OUT),
])
def test_each_kind_has_its_shape_and_parameter_count(kind, hidden, expected):
    head = projection_head(kind, FEATURES, hidden, OUT)
    assert count_parameters(head) == expected
    out = head(torch.randn(5, FEATURES))
    assert out.shape == (5, FEATURES if kind == "none" else OUT)


def test_no_head_is_the_identity():
    h = torch.randn(7, FEATURES)
    assert torch.equal(projection_head("none", FEATURES, None, OUT)(h), h)


def test_linear_head_is_one_affine_map():
    torch.manual_seed(0)
    head = projection_head("linear", FEATURES, None, OUT)
    h = torch.randn(4, FEATURES)
    weight, bias = head.weight.detach().double(), head.bias.detach().double()
    expected = torch.tensor([[sum(weight[j, k] * h[i, k].double() for k in range(FEATURES)) + bias[j]
                              for j in range(OUT)] for i in range(4)], dtype=torch.float64)
    torch.testing.assert_close(head(h).double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_mlp_head_is_w2_relu_bn_w1(training):
    torch.manual_seed(1)
    head = projection_head("mlp", FEATURES, HIDDEN, OUT)
    batch_norm = head[1]
    with torch.no_grad():  # give batch norm's affine part and running statistics values that matter
        batch_norm.weight.uniform_(0.5, 2.0)
        batch_norm.bias.uniform_(-0.5, 0.5)
        batch_norm.running_mean.uniform_(-1, 1)
        batch_norm.running_var.uniform_(0.5, 2.0)
    head.train(training)
    h = torch.randn(9, FEATURES, dtype=torch.float64)
    w1, w2, b2 = head[0].weight.detach().double(), head[3].weight.detach().double(), head[3].bias.detach().double()
    gamma, beta = batch_norm.weight.detach().double(), batch_norm.bias.detach().double()
    a = h @ w1.T
    if training:  # the batch's own mean and biased variance
        mean, var = a.mean(0), ((a - a.mean(0)) ** 2).mean(0)
    else:
        mean, var = batch_norm.running_mean.double(), batch_norm.running_var.double()
    normalised = (a - mean) / torch.sqrt(var + batch_norm.eps) * gamma + beta
    expected = torch.clamp(normalised, min=0) @ w2.T + b2
    torch.testing.assert_close(head(h.float()).double(), expected, rtol=1e-4, atol=1e-5)


def test_mlp_head_is_the_shared_mlp_with_one_hidden_layer():
    # Same layers in the same order, so one seed gives the same weights (SimCLR's runs stay bit-identical).
    torch.manual_seed(3)
    head = projection_head("mlp", FEATURES, None, OUT)
    torch.manual_seed(3)
    reference = mlp(FEATURES, FEATURES, OUT)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].bias is None
    for (name, value), (ref_name, ref_value) in zip(head.state_dict().items(), reference.state_dict().items()):
        assert name == ref_name and torch.equal(value, ref_value)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="none, linear, mlp; got 'conv'"):
        projection_head("conv", FEATURES, None, OUT)  # type: ignore[arg-type]
