"""Safe loading: checkpoints load with torch.load(weights_only=True), so a pickle that would run code
is refused; YAML is only ever read with the safe loader; nothing a grid file says can make ablate
write outside the results folder (its name is a plain name; dataset.root is only read).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from faults_helpers import REPO, results_of, tiny_grid
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from ablate.config import GridSpec
from ablate.store import grid_dir

SOURCES = sorted((REPO / "ablate").rglob("*.py"))
UNSAFE_YAML = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
UNSAFE_LOADERS = {"Loader", "FullLoader", "UnsafeLoader", "CLoader", "CFullLoader", "CUnsafeLoader", "BaseLoader"}


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node


def test_every_torch_load_in_ablate_passes_weights_only_true():
    found = 0
    for path in SOURCES:
        for module, name, node in calls(path):
            if (module, name) == ("torch", "load"):
                found += 1
                keywords = {k.arg: k.value for k in node.keywords}
                value = keywords.get("weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, f"{path}:{node.lineno}"
    assert found >= 3  # checkpoints, the shapes cache, the image-folder cache


def test_yaml_is_only_read_with_the_safe_loader():
    for path in SOURCES:
        for module, name, node in calls(path):
            if module == "yaml":
                assert name not in UNSAFE_YAML, f"{path}:{node.lineno}: yaml.{name}"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                assert node.attr not in UNSAFE_LOADERS, f"{path}:{node.lineno}: yaml.{node.attr}"
        assert "pickle.load" not in path.read_text(), path


class RunsCode:
    """Unpickling this calls os.system: what a poisoned checkpoint would do under torch.load(weights_only=False)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poisoned_checkpoint(path: Path, marker: Path) -> None:
    torch.save({"model": RunsCode(marker), "state": {}}, path)


def test_a_poisoned_checkpoint_is_refused_not_run(tmp_path):
    from ablate.methods.train import load_checkpoint

    marker, path = tmp_path / "PWNED", tmp_path / "checkpoint.pt"
    poisoned_checkpoint(path, marker)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(Exception, match="(?i)weights.only"):
        load_checkpoint(path, model, optimizer, schedule, torch.Generator())
    assert not marker.exists()
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_a_run_with_a_poisoned_checkpoint_fails_without_running_it(tmp_path, zygote):
    from ablate.config import load_grid
    from ablate.plan import plan_grid

    (tmp_path / "poison.yaml").write_text(tiny_grid("poison", axes="  seed: [0, 1]\n"))
    victim, other = plan_grid(load_grid(tmp_path / "poison.yaml"))
    marker = tmp_path / "PWNED"
    folder = tmp_path / "results" / "poison" / victim.run_id
    folder.mkdir(parents=True)
    poisoned_checkpoint(folder / "checkpoint.pt", marker)
    code, child = zygote.run(["run", "poison.yaml", "--quiet"], tmp_path)
    assert code == 1 and not marker.exists()
    results = results_of(tmp_path / "results", "poison")
    assert results[victim.run_id]["status"] == "failed" and "weights" in results[victim.run_id]["error"]["message"].lower()
    assert results[other.run_id]["status"] == "completed"


NAMES = st.text(max_size=70) | st.sampled_from(["..", ".", "../x", "a/../b", "/abs", "a/b", "a\\b", "x\n", "~", "~root",
                                                 "a..", "..a", "con", "a" * 64, "a" * 65, "ok.v1", "-x", "_x", "x\x00"])


@settings(max_examples=300, deadline=None, database=None)
@given(name=NAMES)
def test_an_accepted_grid_name_stays_one_level_inside_the_results_folder(tmp_path_factory, name):
    try:
        GridSpec(name=name)
    except ValidationError:
        return
    results = tmp_path_factory.getbasetemp() / "results"
    folder = grid_dir(results, name)
    assert folder.resolve().parent == results.resolve() and folder.name == name


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if not str(p.relative_to(root)).startswith(skip)}


def test_a_run_writes_only_in_its_results_folder_and_never_in_dataset_root(tmp_path, zygote):
    root = tmp_path / "images"
    for label, colour in enumerate(["red", "blue"]):
        (root / colour).mkdir(parents=True)
        for index in range(12):
            Image.new("RGB", (20, 20), (255 * (1 - label), 10 * index, 255 * label)).save(root / colour / f"{index}.png")
    grid = tiny_grid("folder_run", axes="  seed: [0]\n", train="epochs: 1, batch_size: 8").replace(
        "{name: shapes, train_size: 200, test_size: 100, image_size: 16}", f"{{name: folder, root: '{root}', image_size: 16}}")
    (tmp_path / "grid.yaml").write_text(grid)
    os.chmod(root, 0o555)  # for a non-root user this alone would refuse writes; root ignores it, hence the snapshot
    before = tree(tmp_path)
    try:
        code, child = zygote.run(["run", "grid.yaml", "--quiet"], tmp_path, env={"ABLATE_CACHE": str(tmp_path / "cache")})
    finally:
        os.chmod(root, 0o755)
    assert code == 0, child.stderr
    after = tree(tmp_path, skip=("results", "cache", ".child-"))
    assert after == {k: v for k, v in before.items() if not k.startswith(".child-")}
    assert [r["status"] for r in results_of(tmp_path / "results", "folder_run").values()] == ["completed"]
