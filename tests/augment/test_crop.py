from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from augment_helpers import generator, standard_error_bound, structured_images

from ablate.augment.crop import Crop, crop_area_and_aspect, resized_crop

DEVICE = torch.device("cpu")


def test_sampled_area_and_aspect_stay_in_range_and_spread() -> None:
    n = 20000
    params = Crop().sample(n, 32, 32, generator(1), DEVICE)
    area, aspect = crop_area_and_aspect(params["box"], 32, 32)
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert aspect.min() >= 0.75 - 1e-5 and aspect.max() <= 4 / 3 + 1e-5
    assert area.min() < 0.09 and area.max() > 0.95  # spreads to both ends
    assert aspect.min() < 0.76 and aspect.max() > 1.32
    # log-uniform aspect: the median is the geometric mean of the ends, 1.0
    assert abs(aspect.log().median().item()) < 0.02
    box = params["box"]
    assert (box[:, 0] >= 0).all() and (box[:, 1] >= 0).all()
    assert (box[:, 0] + box[:, 2] <= 1 + 1e-6).all() and (box[:, 1] + box[:, 3] <= 1 + 1e-6).all()


def test_flip_probability() -> None:
    n = 20000
    flips = Crop().sample(n, 32, 32, generator(2), DEVICE)["flip"].float().mean().item()
    assert abs(flips - 0.5) < standard_error_bound(0.5, n)


def test_whole_image_box_is_identity_and_flip_mirrors() -> None:
    x = structured_images(4)
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(4, 1)
    same = resized_crop(x, whole, torch.zeros(4, dtype=torch.bool))
    mirrored = resized_crop(x, whole, torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored, x.flip(-1), atol=1e-5, rtol=0)


def test_crop_matches_torch_crop_then_bilinear_resize_inside() -> None:
    """A whole-pixel box equals cropping then bilinear resizing (align_corners=False), away from the border."""
    x = structured_images(2, size=32)
    top, left, h, w = 5, 9, 16, 12
    box = torch.tensor([[left / 32, top / 32, w / 32, h / 32]]).repeat(2, 1)
    ours = resized_crop(x, box, torch.zeros(2, dtype=torch.bool))
    reference = F.interpolate(x[:, :, top : top + h, left : left + w], size=(32, 32), mode="bilinear", align_corners=False)
    # torchvision/interpolate clamp to the crop at its outer half pixel; we read the true neighbours there.
    torch.testing.assert_close(ours[:, :, 2:-2, 2:-2], reference[:, :, 2:-2, 2:-2], atol=1e-5, rtol=0)


def test_output_shape_dtype_range_and_determinism() -> None:
    x = structured_images(16)
    op = Crop()
    a = op(x, generator(3))
    b = op(x, generator(3))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    params = op.sample(16, 32, 32, generator(3), DEVICE)
    assert torch.equal(op.apply(x, params), a)  # replay from params
    assert not torch.equal(a, op(x, generator(4)))


def test_fallback_when_no_draw_fits() -> None:
    """With an impossible aspect for the image (very wide crops of a tall image), the fallback box is used."""
    params = Crop(scale=(0.9, 1.0), ratio=(3.0, 4.0)).sample(64, 32, 8, generator(5), DEVICE)
    area, aspect = crop_area_and_aspect(params["box"], 32, 8)
    # the largest box of aspect 3 inside a 8-wide, 32-high image: w = 8, h = 8/3 → area 1/12
    assert torch.allclose(aspect, torch.full_like(aspect, 3.0), atol=1e-5)
    assert torch.allclose(area, torch.full_like(area, 1 / 12), atol=1e-5)
    assert math.isclose(params["box"][:, 2].max().item(), 1.0, abs_tol=1e-6)
