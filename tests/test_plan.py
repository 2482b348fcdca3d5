"""Plan: the product of the axes, ordered pairs, and run ids that are stable across machines."""

import re

import pytest

from ablate.config import GridSpec, RunSpec
from ablate.plan import expand_pairs, plan_grid, run_id_of


def test_pairs_are_every_ordered_pair():
    assert expand_pairs(["a", "b", "c"]) == [
        ("a", "a"), ("a", "b"), ("a", "c"), ("b", "a"), ("b", "b"), ("b", "c"), ("c", "a"), ("c", "b"), ("c", "c")]


def test_grid_expands_to_the_product_of_its_axes():
    grid = GridSpec(name="g", grid={"pair": ["crop", "color"], "seed": [0, 1, 2], "train.batch_size": [64, 128]})
    runs = plan_grid(grid)
    assert len(runs) == 4 * 3 * 2
    ops = {tuple(r.spec.augment.ops) for r in runs}
    assert ops == {("crop",), ("crop", "color"), ("color", "crop"), ("color",)}
    assert {r.spec.seed for r in runs} == {0, 1, 2}
    assert {r.spec.train.batch_size for r in runs} == {64, 128}
    assert len({r.run_id for r in runs}) == len(runs)
    first = runs[0]
    assert first.axes == {"pair": ["crop", "crop"], "seed": 0, "train.batch_size": 64}


def test_run_id_changes_with_every_field_and_only_with_the_spec():
    base = RunSpec(seed=3)
    assert re.fullmatch(r"[0-9a-f]{12}", run_id_of(base))
    assert run_id_of(RunSpec.model_validate(base.model_dump())) == run_id_of(base)
    changed = [RunSpec(seed=4), RunSpec(seed=3, train={"epochs": 11}), RunSpec(seed=3, augment={"ops": ["color", "crop"]}),
               RunSpec(seed=3, method={"name": "simclr", "temperature": 0.2}), RunSpec(seed=3, method="supervised"),
               RunSpec(seed=3, dataset={"seed": 1}), RunSpec(seed=3, eval={"knn_k": 20})]
    ids = {run_id_of(spec) for spec in changed}
    assert len(ids) == len(changed) and run_id_of(base) not in ids


def test_run_ids_do_not_depend_on_how_a_value_was_given():
    explicit = GridSpec(name="a", train={"epochs": 10}, grid={"seed": [0]})
    default = GridSpec(name="b", grid={"seed": [0]})  # epochs defaults to 10; grid name is not part of the id
    assert [r.run_id for r in plan_grid(explicit)] == [r.run_id for r in plan_grid(default)]


def test_known_run_id_is_stable():
    # Pinned: if this changes, every user's completed results would be orphaned. Change only with a
    # migration note (a new field with a default changes the canonical JSON too).
    grid = GridSpec(name="g", grid={"pair": ["crop"], "seed": [0]})
    (run,) = plan_grid(grid)
    assert run.spec.augment.ops == ["crop"]
    assert run.run_id == run_id_of(RunSpec(augment={"ops": ["crop"]}, seed=0))
    # b976d17bced6 until the method became a mapping with its own settings (method: {name: simclr,
    # temperature: 0.5} instead of method: simclr + train.temperature): every id changed then (README, "Upgrading").
    assert run.run_id == "9ea882c19543"  # the literal: the line above moves with the code it tests


def test_section_axis_merges_several_fields_per_value():
    grid = GridSpec(name="g", augment={"protocol": "both_branches", "ops": ["crop", "color"]},
                    grid={"augment": [{"color_strength": 0.5}, {"ops": ["crop", "color", "blur"]}]})
    first, second = plan_grid(grid)
    assert first.spec.augment.color_strength == 0.5 and first.spec.augment.ops == ["crop", "color"]
    assert second.spec.augment.ops == ["crop", "color", "blur"] and second.spec.augment.color_strength == 1.0
    assert first.spec.augment.protocol == second.spec.augment.protocol == "both_branches"


def plan_by_copying_everything(grid: GridSpec) -> list[tuple[str, dict]]:
    """The plan as it was made before runs shared the base's unchanged parts: a deep copy of the whole base
    per run, each axis set into it (the reference of the test below)."""
    import copy
    import itertools

    from ablate.config import set_path
    from ablate.plan import axis_values, ops_of_pair

    axes = axis_values(grid)
    planned = []
    for combination in itertools.product(*axes.values()):
        data = copy.deepcopy(grid.base_spec())
        for axis, value in zip(axes, combination):
            set_path(data, "augment.ops" if axis == "pair" else axis, ops_of_pair(value) if axis == "pair" else copy.deepcopy(value))
        spec = RunSpec.model_validate(data)
        planned.append((run_id_of(spec), spec.model_dump(mode="json")))
    return planned


def test_runs_share_nothing_they_could_change_and_leave_the_base_alone():
    grid = GridSpec(name="g", augment={"protocol": "one_branch", "crop_scale": [0.25, 1.0]},
                    grid={"pair": ["crop", "color"], "seed": [0, 1], "train.lr": [0.5, 1.0],
                          "augment": [{"color_strength": 0.5}, {"blur_p": 0.1}],
                          "method": ["simclr", {"name": "byol", "momentum_base": 0.995}], "dataset.train_size": [64]})
    base = grid.base_spec()
    runs = plan_grid(grid)
    assert grid.base_spec() == base
    assert [(r.run_id, r.spec.model_dump(mode="json")) for r in runs] == plan_by_copying_everything(grid)
    assert len(runs) == 4 * 2 * 2 * 2 * 2
    byol = [r for r in runs if r.spec.method.name == "byol"]
    assert {r.spec.method.momentum_base for r in byol} == {0.995} and {r.spec.augment.crop_scale for r in runs} == {(0.25, 1.0)}
    ops_lists = [r.spec.augment.ops for r in runs]
    assert len({id(ops) for ops in ops_lists}) == len(runs)  # each run its own list: changing one changes no other
    runs[0].spec.augment.ops.append("blur")
    assert [r.spec.augment.ops for r in plan_grid(grid)][0] == ["crop"] and runs[1].spec.augment.ops == ["crop"]


def test_a_runs_data_copies_only_the_mappings_its_axes_write_into():
    import copy

    from ablate.plan import run_data

    base = GridSpec(name="g").base_spec()
    snapshot = copy.deepcopy(base)
    data = run_data(base, {"pair": ("crop", "color"), "train.lr": 2.0, "method.temperature": 0.1, "seed": 4,
                           "model": {"width": 2}})
    assert base == snapshot  # nothing written into the base, at any depth
    assert data["augment"]["ops"] == ["crop", "color"] and data["train"]["lr"] == 2.0 and data["seed"] == 4
    assert data["method"] == {**base["method"], "temperature": 0.1} and data["model"] == {**base["model"], "width": 2}
    assert data["augment"] is not base["augment"] and data["train"] is not base["train"]
    assert data["dataset"] is base["dataset"] and data["eval"] is base["eval"]  # untouched sections are shared, read-only


def test_fields_added_after_schema_2_leave_the_ids_of_earlier_runs_alone():
    # Ids computed by ablate at a7a7da2, before model.head, eval.representation, SimCLR's loss settings,
    # dataset.download / stream, fine-tuning and transfer existed: at their defaults the ids are unchanged.
    assert run_id_of(RunSpec()) == "56ec47e63fd6"
    earlier = RunSpec(method={"name": "simclr", "temperature": 0.2}, augment={"ops": ["crop"]}, seed=3)
    assert run_id_of(earlier) == "e62877a56edf"


@pytest.mark.parametrize("changed", [
    {"model": {"head": "linear"}},
    {"eval": {"representation": "z"}},
    {"method": {"name": "simclr", "loss": "nt_logistic"}},
    {"eval": {"finetune": {"fractions": [0.1]}}},
    {"eval": {"transfer": [{"label": "cifar100", "dataset": {"name": "cifar100"}}]}},
    {"dataset": {"name": "folder", "stream": True}},
])
def test_an_added_field_away_from_its_default_gives_a_new_id(changed):
    same_otherwise = {"dataset": {"name": "folder"}} if "dataset" in changed else {}
    assert run_id_of(RunSpec.model_validate(changed)) != run_id_of(RunSpec.model_validate(same_otherwise))


def test_whether_to_download_is_never_part_of_the_id():
    assert run_id_of(RunSpec(dataset={"download": True})) == run_id_of(RunSpec())
