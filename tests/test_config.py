"""Grid files: the documented form loads; every kind of bad input is one clear problem each."""

from pathlib import Path

import pytest

from ablate.config import GridError, RunSpec, load_grid, run_spec_fields
from ablate.config.methods import METHOD_SPECS

QUICKSTART_FORM = """\
name: quickstart
dataset: {name: shapes, train_size: 4000, test_size: 1000, image_size: 32}
model: {arch: small_cnn}
method: {name: simclr, temperature: 0.5}
train: {epochs: 10, batch_size: 256, lr: 0.5}
augment: {protocol: one_branch}
grid:
  pair: [crop, color, blur]   # every ordered pair (a, b); a == b is the single operator
  seed: [0]
"""


# SimCLR's loss settings (Tables 4, 5) at the paper's NT-Xent with ℓ2 normalisation.
SIMCLR_LOSS_DEFAULTS = {"loss": "nt_xent", "semi_hard": False, "l2_normalize": True, "margin": 1.0}

def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path, overrides=None) -> list[str]:
    with pytest.raises(GridError) as caught:
        load_grid(path, overrides)
    return [str(p) for p in caught.value.problems]


def test_documented_form_loads_with_its_values(tmp_path):
    grid = load_grid(write(tmp_path, QUICKSTART_FORM))
    assert grid.name == "quickstart"
    assert grid.dataset.train_size == 4000 and grid.dataset.image_size == 32
    assert grid.train.batch_size == 256 and grid.method.name == "simclr" and grid.method.temperature == 0.5
    assert grid.augment.protocol == "one_branch"
    assert grid.grid == {"pair": ["crop", "color", "blur"], "seed": [0]}


def test_shipped_grid_files_are_valid():
    for path in sorted(Path(__file__).parents[1].joinpath("grids").glob("*.yaml")):
        assert load_grid(path).name, path


def test_missing_file(tmp_path):
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_broken_yaml_names_the_line(tmp_path):
    (problem,) = problems_of(write(tmp_path, "name: x\ngrid: {pair: [crop\n"))
    assert problem.startswith(f"{tmp_path / 'grid.yaml'}:3: broken YAML")


def test_all_problems_reported_at_once_with_paths_and_lines(tmp_path):
    text = "name: x\ntrain: {epochs: -1, batchsize: 3}\ngrid:\n  pair: [crop, colr]\n  seed: []\n"
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert ":2: train.epochs: got -1; input should be greater than or equal to 1" in joined
    assert "train.batchsize: unknown key (did you mean 'batch_size'?)" in joined
    assert ":4: grid.pair[1]: got 'colr'; expected one of 'crop', 'cutout', 'color'" in joined
    assert ":5: grid.seed: empty axis" in joined


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ndataset: {name: places365}\n", "dataset.name: got 'places365'; expected one of 'shapes', 'cifar10'"),
        ("name: x\nmodel: {arch: vgg}\n", "model.arch: got 'vgg'; expected one of 'small_cnn', 'resnet18'"),
        ("name: x\ntrain: {batch_size: ten}\n", "train.batch_size: got 'ten'; input should be a valid integer"),
        ("name: ../evil\n", "name: got '../evil'; grid name '../evil' is not a plain name"),
        ("name: a/b\n", "is not a plain name"),
        ("name: x\ngrid: {train.batch_sise: [1]}\n", "grid.train.batch_sise: unknown axis (did you mean 'train.batch_size'?)"),
        ("name: x\ngrid: {seed: [0, 0]}\n", "grid.seed: duplicate values [0]"),
        ("- a\n- b\n", "top level is a list; expected a mapping"),
        ("", "file is empty"),
        ("name: x\nfoo: 1\n", "foo: unknown key"),
        ("name: !!python/object:os.system x\n", "refused YAML"),
    ],
)
def test_bad_input_gives_a_clear_problem(tmp_path, text, expected):
    problems = problems_of(write(tmp_path, text))
    assert any(expected in p for p in problems), problems


def test_alias_bomb_is_refused_without_expanding(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        prev = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([prev] * 10)}]")
    (problem,) = problems_of(write(tmp_path, "\n".join(lines) + "\nname: x\n"))
    assert "alias bomb" in problem


def test_axis_values_validate_against_the_field(tmp_path):
    text = "name: x\ngrid:\n  train.batch_size: [256, 1]\n  augment.color_strength: [0.5, -1]\n"
    problems = problems_of(write(tmp_path, text))
    assert any("grid.train.batch_size[1]: got 1; input should be greater than or equal to 2" in p for p in problems)
    assert any("grid.augment.color_strength[1]: got -1" in p for p in problems)


def test_set_overrides_fields_and_replaces_axes(tmp_path):
    path = write(tmp_path, QUICKSTART_FORM)
    grid = load_grid(path, ["train.epochs=1", "dataset.root=/data", "grid.seed=[0, 1]"])
    assert grid.train.epochs == 1 and grid.dataset.root == "/data" and grid.grid["seed"] == [0, 1]
    assert problems_of(path, ["train.epochs=zero"]) == [
        "--set: train.epochs: got 'zero'; input should be a valid integer, unable to parse string as an integer"
    ]


def test_every_listed_axis_path_is_a_run_spec_field():
    spec = RunSpec().model_dump()
    method_fields = {name for model in METHOD_SPECS.values() for name in model.model_fields}
    for dotted in run_spec_fields():
        if dotted.startswith("method."):  # a field of some method's settings, not of the default method's
            assert dotted.removeprefix("method.") in method_fields, dotted
            continue
        current = spec
        for key in dotted.split("."):
            current = current[key]


# Depths below, at and far beyond PyYAML 6.0.4's own scanner limit (1,000 levels), in flow and
# block style, through libyaml and through the pure-Python parser: ablate's message is the same.
DEEP_FILES = [
    ("flow-33", "name: deep\ngrid: {seed: " + "[" * 33 + "]" * 33 + "}\n", 2),
    ("flow-999", "name: deep\ngrid: {seed: " + "[" * 999 + "]" * 999 + "}\n", 2),
    ("flow-100000", "name: deep\ngrid: {seed: " + "[" * 100_000 + "]" * 100_000 + "}\n", 2),
    ("block-2000", "name: x\nseed:\n  " + "- " * 2000 + "0\n", 3),
]
PARSERS = ["SafeLoader", "CSafeLoader"]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("name,text,line", DEEP_FILES, ids=[case[0] for case in DEEP_FILES])
def test_over_deep_file_gets_ablates_own_message_whatever_the_parser(tmp_path, monkeypatch, parser, name, text, line):
    import yaml

    import ablate.config.reading

    if not hasattr(yaml, parser):
        pytest.skip(f"this PyYAML has no {parser} (built without libyaml)")
    monkeypatch.setattr(ablate.config.reading, "COMPOSER", getattr(yaml, parser))
    expected = f"{tmp_path / 'grid.yaml'}:{line}: nested more than 32 levels deep; a grid file needs about 4"
    assert problems_of(write(tmp_path, text)) == [expected]


def test_a_file_32_levels_deep_is_not_refused_for_its_depth(tmp_path):
    # grid: {seed: [[...]]}: the mapping, grid's mapping and 30 lists are 32 levels; the seeds are then
    # lists, which the seed field refuses, but never for the depth.
    text = "name: deep\ngrid: {seed: " + "[" * 30 + "]" * 30 + "}\n"
    assert not any("nested" in problem for problem in problems_of(write(tmp_path, text)))


# The method: a bare name or a mapping with the method's own settings (a discriminated union on `name`).

def test_a_bare_method_name_is_that_method_with_its_defaults(tmp_path):
    grid = load_grid(write(tmp_path, "name: x\nmethod: simclr\n"))
    assert grid.method.model_dump() == {"name": "simclr", "temperature": 0.5, **SIMCLR_LOSS_DEFAULTS}
    assert load_grid(write(tmp_path, "name: x\nmethod: supervised\n")).method.model_dump() == {"name": "supervised"}
    assert load_grid(write(tmp_path, "name: x\n")).method.model_dump() == {"name": "simclr", "temperature": 0.5, **SIMCLR_LOSS_DEFAULTS}


def test_a_method_axis_keeps_the_settings_of_the_method_already_there(tmp_path):
    from ablate.plan import plan_grid

    text = "name: x\nmethod: {name: simclr, temperature: 0.2}\ngrid: {method: [simclr, supervised]}\n"
    methods = [run.spec.method.model_dump() for run in plan_grid(load_grid(write(tmp_path, text)))]
    assert methods == [{"name": "simclr", "temperature": 0.2, **SIMCLR_LOSS_DEFAULTS}, {"name": "supervised"}]


def test_a_method_field_is_an_axis_and_a_set_path(tmp_path):
    from ablate.plan import plan_grid

    path = write(tmp_path, "name: x\nmethod: simclr\ngrid: {method.temperature: [0.1, 1.0]}\n")
    assert [run.spec.method.temperature for run in plan_grid(load_grid(path))] == [0.1, 1.0]
    path = write(tmp_path, "name: x\nmethod: simclr\n")
    assert load_grid(path, ["method.temperature=0.05"]).method.temperature == 0.05
    assert load_grid(write(tmp_path, "name: x\n"), ["method.temperature=0.05"]).method.temperature == 0.05
    assert load_grid(path, ["method=supervised"]).method.name == "supervised"


@pytest.mark.parametrize("text,overrides,expected", [
    ("name: x\nmethod: swav\n", [], ":2: method: got 'swav'; expected one of 'simclr', 'moco_v2', 'byol', 'simsiam', 'barlow_twins', 'vicreg', 'dino' or 'supervised'"),
    ("name: x\nmethod: {name: swav}\n", [], ":2: method: got 'swav'; expected one of 'simclr', 'moco_v2', 'byol', 'simsiam', 'barlow_twins', 'vicreg', 'dino' or 'supervised'"),
    ("name: x\nmethod: {temperature: 0.1}\n", [], ":2: method: got {'temperature': 0.1}; a method is a name, or a mapping "
     "with a name: one of 'simclr', 'moco_v2', 'byol', 'simsiam', 'barlow_twins', 'vicreg', 'dino' or 'supervised'"),
    ("name: x\nmethod: {name: simclr, temperature: 0}\n", [], ":2: method.temperature: got 0; input should be greater than 0"),
    ("name: x\nmethod: {name: simclr, temprature: 0.1}\n", [], ":2: method.temprature: unknown key (did you mean "
     "'temperature'?); allowed: name, temperature, loss, semi_hard, l2_normalize, margin"),
    ("name: x\nmethod: supervised\ngrid: {method.temperature: [0.1]}\n", [], ":3: grid.method.temperature[0]: unknown key; "
     "allowed: name"),
    ("name: x\ntrain: {temperature: 0.5}\n", [], ":2: train.temperature: unknown key; it moved: the temperature is the "
     "method's setting now, e.g. method: {name: simclr, temperature: 0.5}"),
])
def test_bad_methods_get_one_line_each_naming_the_field(tmp_path, text, overrides, expected):
    path = write(tmp_path, text)
    assert problems_of(path, overrides) == [f"{path}{expected}"]
