"""A picture of what each Figure-5 cell means: sample images under each operator alone and each ordered pair.

Rows are images; columns are the original, (under ``one_branch``) view 2 = the shared base crop,
each operator alone, then each ordered pair (a, b), a ≠ b, a applied first — the cell (row a,
column b) of the paper's heatmap. Every column shows view 1 exactly as training makes it
(``ViewMaker.pair`` under the spec's protocol), drawn from the same seed: under ``one_branch`` the
base crop is therefore the same in every column of a row, and the columns differ only by the
targeted operators.
"""

from __future__ import annotations

import io
from itertools import permutations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ablate.augment import ViewMaker  # noqa: E402
from ablate.augment.base import to_unit_float  # noqa: E402
from ablate.config import AugmentSpec  # noqa: E402
from ablate.store import write_bytes_atomic  # noqa: E402

CELL_INCHES = 0.95


def preview_columns(ops: list[str], spec: AugmentSpec) -> list[tuple[str, list[str] | None]]:
    """(title, ops) per column: original (None), base crop ([]), each op alone, each ordered pair."""
    columns: list[tuple[str, list[str] | None]] = [("original", None)]
    if spec.protocol == "one_branch" and spec.base_crop:
        columns.append(("view 2:\nbase crop", []))
    columns += [(op, [op]) for op in ops]
    columns += [(f"{a}\n→ {b}", [a, b]) for a, b in permutations(ops, 2)]
    return columns


def render_column(images: torch.Tensor, ops: list[str] | None, spec: AugmentSpec, seed: int) -> torch.Tensor:
    """float32 B×3×H×W in [0, 1]: the images (ops None), the base crop (ops []), or view 1 under ops."""
    if ops is None:
        return to_unit_float(images)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    if not ops:
        maker = ViewMaker(spec.model_copy(update={"ops": ["crop"]}))
        return maker.pair(images, generator)[1]
    return ViewMaker(spec.model_copy(update={"ops": ops})).pair(images, generator)[0]


def write_preview(
    images_uint8: torch.Tensor,
    ops: list[str],
    augment_spec: AugmentSpec,
    out_path: Path,
    seed: int,
    n_images: int = 6,
) -> Path:
    """Write the PNG (atomically) and return its path. images_uint8: N×3×H×W uint8 (the first n_images are shown)."""
    if not ops:
        raise ValueError("ops must name at least one operator")
    images = images_uint8[:n_images].cpu()
    columns = preview_columns(list(ops), augment_spec)
    pictures = [render_column(images, column_ops, augment_spec, seed) for _, column_ops in columns]
    rows = images.shape[0]
    figure, axes = plt.subplots(
        rows, len(columns), figsize=(CELL_INCHES * len(columns), CELL_INCHES * rows + 0.9), squeeze=False
    )
    for j, (title, _) in enumerate(columns):
        axes[0, j].set_title(title, fontsize=7)
        for i in range(rows):
            axes[i, j].imshow(pictures[j][i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    protocol = augment_spec.protocol
    figure.suptitle(
        f"ablate preview — protocol {protocol}, colour strength {augment_spec.color_strength:g}, seed {seed}; "
        "columns after the base crop: view 1 under the operator(s), a → b = a first",
        fontsize=8,
        x=0.01,
        ha="left",
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    out_path = Path(out_path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_bytes_atomic(out_path, buffer.getvalue())
    return out_path
