from __future__ import annotations

import pytest
import torch
from augment_helpers import generator, structured_images, uint8_images

from ablate.augment import ViewMaker, build_operator
from ablate.augment.crop import Crop
from ablate.config import AugmentSpec

DEVICE = torch.device("cpu")


def test_spec_options_reach_the_operators() -> None:
    spec = AugmentSpec(crop_scale=(0.5, 0.6), color_strength=0.5, blur_sigma=(1.0, 1.5), noise_std=0.2)
    crop = build_operator("crop", spec)
    assert crop.scale == (0.5, 0.6)  # type: ignore[attr-defined]
    assert build_operator("color", spec).strength == 0.5  # type: ignore[attr-defined]
    assert build_operator("blur", spec).sigma == (1.0, 1.5)  # type: ignore[attr-defined]
    assert build_operator("noise", spec).std == 0.2  # type: ignore[attr-defined]


def test_one_branch_view2_is_the_shared_base_crop_and_view1_adds_the_ops() -> None:
    spec = AugmentSpec(protocol="one_branch", ops=["color"], color_p=1.0)
    maker = ViewMaker(spec)
    x = uint8_images()
    params = maker.sample_pair(16, 32, 32, generator(1), DEVICE)
    view1, view2 = maker.apply_pair(x, params)
    assert params.view1.base is params.view2.base and params.view2.ops == []
    base = Crop(spec.base_crop_scale, spec.crop_ratio, spec.flip_p).apply(x.float() / 255, params.view1.base)
    assert torch.equal(view2, base)  # view 2 is exactly the base crop
    assert torch.equal(view1, maker.ops[0].apply(base, params.view1.ops[0]))  # view 1 = color(base crop)
    assert (view1 - view2).abs().amax(dim=(1, 2, 3)).gt(0.01).all()  # color with p=1 changes every image


def test_one_branch_without_base_crop_leaves_view2_as_the_image() -> None:
    maker = ViewMaker(AugmentSpec(protocol="one_branch", ops=["rotate"], base_crop=False))
    x = uint8_images()
    view1, view2 = maker.pair(x, generator(2))
    assert torch.equal(view2, x.float() / 255)
    assert not torch.equal(view1, view2)


def test_both_branches_draws_each_view_independently() -> None:
    maker = ViewMaker(AugmentSpec(protocol="both_branches", ops=["crop", "color"]))
    params = maker.sample_pair(4096, 32, 32, generator(3), DEVICE)
    box1, box2 = params.view1.ops[0]["box"], params.view2.ops[0]["box"]
    assert params.view1.base is None and params.view2.base is None
    assert not torch.equal(box1, box2)
    # independent draws: the two views' crop areas are uncorrelated
    area1, area2 = box1[:, 2] * box1[:, 3], box2[:, 2] * box2[:, 3]
    corr = torch.corrcoef(torch.stack([area1, area2]))[0, 1].item()
    assert abs(corr) < 4 / 4096**0.5  # 4 standard errors: a false alarm 1 time in 16000
    x = uint8_images()
    view1, view2 = maker.pair(x, generator(3))
    assert (view1 - view2).abs().amax(dim=(1, 2, 3)).gt(0.01).all()


@pytest.mark.parametrize("protocol", ["one_branch", "both_branches"])
def test_pair_contract_shape_dtype_device_range_seed_replay(protocol: str) -> None:
    maker = ViewMaker(AugmentSpec(protocol=protocol, ops=["crop", "color", "blur"]))
    x = uint8_images()
    a1, a2 = maker.pair(x, generator(4))
    b1, b2 = maker.pair(x, generator(4))
    c1, _ = maker.pair(x, generator(5))
    for view in (a1, a2):
        assert view.shape == x.shape and view.dtype == torch.float32 and view.device == x.device
        assert view.min() >= 0 and view.max() <= 1
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, c1)
    replay = maker.apply_pair(x, maker.sample_pair(16, 32, 32, generator(4), DEVICE))
    assert torch.equal(replay[0], a1) and torch.equal(replay[1], a2)
    # float input in [0, 1] gives the same views as the uint8 it came from
    f1, f2 = maker.pair(x.float() / 255, generator(4))
    assert torch.equal(f1, a1) and torch.equal(f2, a2)


def test_single_view_uses_base_crop_then_ops() -> None:
    maker = ViewMaker(AugmentSpec(protocol="one_branch", ops=["rotate"]))
    x = uint8_images()
    params = maker.sample_view(16, 32, 32, generator(6), DEVICE)
    expected = maker.ops[0].apply(maker.base.apply(x.float() / 255, params.base), params.ops[0])  # type: ignore[union-attr]
    assert torch.equal(maker.single(x, generator(6)), expected)


def test_bad_input_is_refused_with_a_clear_message() -> None:
    maker = ViewMaker(AugmentSpec())
    with pytest.raises(ValueError, match="B×3×H×W"):
        maker.pair(torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match="uint8 or floating"):
        maker.pair(torch.zeros(2, 3, 8, 8, dtype=torch.int32))


def test_both_views_in_one_batch_equal_each_view_alone() -> None:
    """apply_pair runs the two views as one 2B batch; each view must be what it would be on its own."""
    maker = ViewMaker(AugmentSpec(protocol="both_branches", ops=["crop", "color", "blur", "cutout", "autoaugment"]))
    x = uint8_images(24, seed=9)
    params = maker.sample_pair(24, 32, 32, generator(9), DEVICE)
    view1, view2 = maker.apply_pair(x, params)
    torch.testing.assert_close(view1, maker.apply_view(x.float() / 255, params.view1), atol=1e-6, rtol=0)
    torch.testing.assert_close(view2, maker.apply_view(x.float() / 255, params.view2), atol=1e-6, rtol=0)


def test_from_operators_equals_the_spec_built_maker() -> None:
    """The pydantic-free constructor (benchmarks on bare machines) makes the same views as the spec's defaults."""
    from ablate.augment.blur import Blur
    from ablate.augment.color import Color

    spec_maker = ViewMaker(AugmentSpec(protocol="both_branches", ops=["crop", "color", "blur"]))
    bare_maker = ViewMaker.from_operators("both_branches", [Crop(), Color(), Blur()])
    x = uint8_images()
    a, b = spec_maker.pair(x, generator(12)), bare_maker.pair(x, generator(12))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="protocol"):
        ViewMaker.from_operators("one-branch", [Crop()])


def test_cpu_chunks_give_the_same_views_as_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import ablate.augment.views as views

    maker = ViewMaker(AugmentSpec(protocol="both_branches", ops=["crop", "color", "blur", "autoaugment"]))
    x = uint8_images(24, seed=13)
    params = maker.sample_pair(24, 32, 32, generator(13), DEVICE)
    whole = maker.apply_pair(x, params)
    monkeypatch.setattr(views, "CPU_CHUNK_BYTES", 1)
    monkeypatch.setattr(views, "MIN_CHUNK", 5)  # chunks of 5 images: 48 = 9 × 5 + 3
    assert views.chunk_size(torch.zeros(48, 3, 32, 32)) == 5
    chunked = maker.apply_pair(x, params)
    torch.testing.assert_close(chunked[0], whole[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked[1], whole[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("inplace", [False, True])
def test_gpu_strategy_equals_cpu_strategy(inplace: bool) -> None:
    """apply_to_subset's dense (GPU) strategy, run here on CPU, gives the subset (CPU) strategy's result."""
    from ablate.augment.base import apply_to_subset, dense_apply
    from ablate.augment.color import shift_hue

    x = structured_images(12, seed=14)
    mask = torch.tensor([True, False, True, True, False, False, True, False, True, True, False, True])
    shift = torch.linspace(-0.2, 0.2, 12)

    def fn(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return shift_hue(images, shift[index])

    subset = apply_to_subset(x.clone(), mask, fn, inplace=inplace)
    dense = dense_apply(x.clone(), mask, fn, inplace=inplace)
    torch.testing.assert_close(dense, subset, atol=1e-6, rtol=0)
    assert torch.equal(dense[~mask], x[~mask]) and torch.equal(subset[~mask], x[~mask])
