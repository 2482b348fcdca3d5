"""ablate.preview: the picture is written, has one column per operator and ordered pair, and shows the right views."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import torch
from augment_helpers import uint8_images

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec
from ablate.preview import CELL_INCHES, preview_columns, render_column, write_preview


def test_columns_are_original_base_each_op_and_each_ordered_pair() -> None:
    spec = AugmentSpec(protocol="one_branch")
    columns = preview_columns(["crop", "color", "blur"], spec)
    titles = [title for title, _ in columns]
    assert titles[:5] == ["original", "view 2:\nbase crop", "crop", "color", "blur"]
    pairs = [ops for _, ops in columns[5:]]
    assert len(pairs) == 6 and ["color", "crop"] in pairs and ["crop", "color"] in pairs
    assert all(a != b for a, b in pairs)  # type: ignore[misc]
    no_base = preview_columns(["crop", "color"], AugmentSpec(protocol="both_branches"))
    assert [t for t, _ in no_base] == ["original", "crop", "color", "crop\n→ color", "color\n→ crop"]


def test_cells_are_the_training_views_with_a_shared_base_crop() -> None:
    spec = AugmentSpec(protocol="one_branch")
    images = uint8_images(4, seed=5)
    base = render_column(images, [], spec, seed=3)
    generator = torch.Generator().manual_seed(3)
    view1, view2 = ViewMaker(spec.model_copy(update={"ops": ["color", "rotate"]})).pair(images, generator)
    assert torch.equal(view2, base)  # the base crop column is view 2 of every cell
    assert torch.equal(render_column(images, ["color", "rotate"], spec, seed=3), view1)
    assert torch.equal(render_column(images, None, spec, seed=3), images.float() / 255)


def test_write_preview_writes_a_png_of_the_expected_size(tmp_path: Path) -> None:
    ops = ["crop", "color", "sobel"]
    out = write_preview(uint8_images(6, seed=5), ops, AugmentSpec(protocol="one_branch"), tmp_path / "p" / "preview.png", seed=0, n_images=3)
    assert out == tmp_path / "p" / "preview.png" and out.is_file()
    assert not list(out.parent.glob(".*tmp*"))  # the temporary file was moved into place
    picture = matplotlib.image.imread(out)
    n_columns = 1 + 1 + 3 + 6
    assert picture.shape[1] == round(CELL_INCHES * n_columns * 100)
    assert picture.shape[0] == round((CELL_INCHES * 3 + 0.9) * 100)
    assert picture[..., :3].std() > 0.1  # not a blank canvas
