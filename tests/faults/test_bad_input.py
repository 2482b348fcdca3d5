"""Bad grid files and bad --set values, through `python -m ablate run`: exit status 2, one line per
problem naming the file (and line), the field, the bad value and what is allowed; never a traceback,
never a run started, never a file written.

The commands run in parallel in one fixture (each is a fresh interpreter, ~0.5 s), then each case
checks its own outcome.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faults_helpers import ablate

VALID = "name: ok\ntrain: {epochs: 1, batch_size: 32}\ngrid:\n  pair: [crop, color]\n"
BILLION_LAUGHS = "\n".join(
    ["name: bomb", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
) + "\n"  # 10^10 nodes once expanded; a few hundred bytes on disk


def nested(depth: int) -> str:
    return "name: deep\ngrid: {seed: " + "[" * depth + "]" * depth + "}\n"


# (id, file content (str, bytes, or None for no file), --set values, expected fragments: one per line of stderr)
CASES: list[tuple[str, str | bytes | None, list[str], list[str]]] = [
    ("missing-file", None, [], ["no such file"]),
    ("empty-file", "", [], ["file is empty; expected a mapping with at least 'name' and 'grid'"]),
    ("only-comments", "# a grid, some day\n\n", [], ["file is empty"]),
    ("binary-junk", bytes(range(256)) * 4, [], ["not UTF-8 text (byte 128 is 0x80)"]),
    ("nul-bytes", "name: x\x00\x01\n", [], [":1: not a text file: control character U+0000 is not allowed in YAML"]),
    ("broken-yaml-bracket", "name: x\ngrid: {pair: [crop\n", [], [":3: broken YAML: did not find expected ',' or ']'"]),
    ("broken-yaml-indent", "name: x\ntrain:\n  epochs: 1\n batch_size: 2\n", [], [":4: broken YAML"]),
    ("broken-yaml-tab", "name: x\ntrain:\n\tepochs: 1\n", [], [":3: broken YAML"]),
    ("two-documents", "name: x\n---\nname: y\n", [], [":2: broken YAML"]),
    ("list-not-mapping", "- name: x\n- grid: {}\n", [], ["top level is a list; expected a mapping with at least 'name' and 'grid'"]),
    ("scalar-not-mapping", "just some words\n", [], ["top level is a str; expected a mapping"]),
    ("missing-name", "grid: {seed: [0]}\n", [], ["name: missing (required)"]),
    ("unknown-top-key", VALID + "trian: {epochs: 1}\n", [], [":5: trian: unknown key (did you mean 'train'?); allowed: dataset, model, method, train, augment, eval, seed, name, slurm, grid"]),
    ("unknown-nested-key", "name: x\ntrain: {epochs: 1, batchsize: 3}\n",
     [], [":2: train.batchsize: unknown key (did you mean 'batch_size'?); allowed: epochs, batch_size"]),
    ("unknown-axis", "name: x\ngrid:\n  augment.colour_strength: [1]\n", [],
     [":3: grid.augment.colour_strength: unknown axis (did you mean 'augment.color_strength'?); allowed in augment: protocol, ops,"]),
    ("unknown-axis-section", "name: x\ngrid:\n  optim.lr: [1]\n", [],
     [":3: grid.optim.lr: unknown axis (did you mean 'train.lr'?); allowed: pair, seed, method, or SECTION.FIELD with SECTION one of augment, dataset, eval, method, model, train"]),
    ("wrong-type-int", "name: x\ntrain: {batch_size: ten}\n", [], [":2: train.batch_size: got 'ten'; input should be a valid integer"]),
    ("wrong-type-section", "name: x\ntrain: 5\n", [], [":2: train: got 5; input should be a valid dictionary"]),
    ("wrong-type-grid", "name: x\ngrid: [seed]\n", [], [":2: grid: got ['seed']; input should be a valid dictionary"]),
    ("wrong-type-axis", "name: x\ngrid: {seed: 3}\n", [], [":2: grid.seed: got 3; input should be a valid list"]),
    ("wrong-type-name", "name: 2024-01-01\n", [], [":1: name: got datetime.date(2024, 1, 1); input should be a valid string"]),
    ("zero-epochs", "name: x\ntrain: {epochs: 0}\n", [], [":2: train.epochs: got 0; input should be greater than or equal to 1"]),
    ("negative-epochs", "name: x\ntrain:\n  epochs: -3\n", [], [":3: train.epochs: got -3; input should be greater than or equal to 1"]),
    ("batch-size-1", "name: x\ntrain: {batch_size: 1}\n", [], [":2: train.batch_size: got 1; input should be greater than or equal to 2"]),
    ("batch-size-axis-1", "name: x\ngrid:\n  train.batch_size: [64, 1]\n", [],
     [":3: grid.train.batch_size[1]: got 1; input should be greater than or equal to 2"]),
    ("color-strength-0", "name: x\naugment: {color_strength: 0}\n", [], ["augment.color_strength: got 0; input should be greater than 0"]),
    ("color-strength-negative", "name: x\naugment: {color_strength: -0.5}\n", [], ["augment.color_strength: got -0.5; input should be greater than 0"]),
    ("color-strength-huge", "name: x\naugment: {color_strength: 1.0e+9}\n", [],
     ["augment.color_strength: got 1000000000.0; input should be less than or equal to 8"]),
    ("color-strength-inf", "name: x\ngrid:\n  augment.color_strength: [.inf]\n", [], ["grid.augment.color_strength[0]: got inf"]),
    ("color-strength-nan", "name: x\naugment: {color_strength: .nan}\n", [], ["augment.color_strength: got nan"]),
    ("lr-inf", "name: x\ntrain: {lr: .inf}\n", [], ["train.lr: got inf; input should be less than or equal to 100"]),
    ("empty-axis", "name: x\ngrid:\n  seed: []\n", [], [":3: grid.seed: empty axis; give at least one value"]),
    ("duplicate-axis-values", "name: x\ngrid:\n  seed: [0, 1, 0]\n", [], [":3: grid.seed: duplicate values [0]; each value must appear once"]),
    ("duplicate-operators", "name: x\ngrid:\n  pair: [crop, blur, crop]\n", [], ["grid.pair: duplicate values ['crop']"]),
    ("duplicate-set-values", "name: x\ngrid:\n  train.lr: [!!set {a: null}, !!set {a: null}]\n", [],
     ["grid.train.lr: duplicate values", "grid.train.lr[0]: got {'a'}; input should be a valid number"]),
    ("unknown-operator", "name: x\ngrid:\n  pair: [crop, zoom]\n", [],
     [":3: grid.pair[1]: got 'zoom'; expected one of 'crop', 'cutout', 'color', 'sobel', 'noise', 'blur', 'rotate' or 'autoaugment'"]),
    ("unknown-operator-in-ops", "name: x\naugment: {ops: [crop, jpeg]}\n", [], ["augment.ops[1]: got 'jpeg'; expected one of 'crop'"]),
    ("unknown-dataset", "name: x\ndataset: {name: imagenet21k}\n", [], ["dataset.name: got 'imagenet21k'; expected one of 'shapes', 'cifar10', 'cifar100', 'stl10', 'folder', 'imagenette', 'tiny-imagenet' or 'imagenet'"]),
    ("unknown-model", "name: x\nmodel: {arch: vgg16}\n", [], ["model.arch: got 'vgg16'; expected one of 'small_cnn', 'resnet18'"]),
    ("unknown-method", "name: x\nmethod: swav\n", [], [":2: method: got 'swav'; expected one of 'simclr', 'moco_v2', 'byol', 'simsiam', 'barlow_twins', 'vicreg', 'dino' or 'supervised'"]),
    ("unknown-optimizer", "name: x\ntrain: {optimizer: adam}\n", [], ["train.optimizer: got 'adam'; expected one of 'lars', 'sgd' or 'adamw'"]),
    ("name-path-separator", "name: a/b\n", [], [":1: name: got 'a/b'; grid name 'a/b' is not a plain name"]),
    ("name-dotdot", "name: ..\n", [], ["grid name '..' is not a plain name"]),
    ("name-parent", "name: ../escape\n", [], ["grid name '../escape' is not a plain name"]),
    ("name-inner-dotdot", "name: a..b\n", [], ["grid name 'a..b' is not a plain name"]),
    ("name-absolute", "name: /tmp/elsewhere\n", [], ["grid name '/tmp/elsewhere' is not a plain name"]),
    ("name-backslash", "name: 'a\\b'\n", [], ["is not a plain name"]),
    ("name-trailing-newline", 'name: "ok\\n"\n', [], ["grid name 'ok\\n' is not a plain name"]),
    ("name-empty", "name: ''\n", [], ["grid name '' is not a plain name"]),
    ("tag-python-object", "name: !!python/object/apply:os.system ['touch PWNED']\n", [],
     [":1: refused YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"]),
    ("tag-python-name", "name: x\nseed: !!python/name:os.system\n", [], [":2: refused YAML"]),
    ("tag-custom", "name: x\nseed: !evil 3\n", [], [":2: refused YAML: could not determine a constructor for the tag '!evil'"]),
    ("alias-bomb", BILLION_LAUGHS, [], ["document expands to more than 20000 nodes (alias bomb? each alias counts at every use)"]),
    ("self-alias", "name: x\nloop: &loop [*loop]\n", [], ["(an alias that contains itself?)"]),
    ("deep-nesting", nested(100_000), [], [":2: nested more than 32 levels deep; a grid file needs about 4"]),
    ("too-many-nodes", "name: x\ngrid:\n  seed: [" + ", ".join(map(str, range(30_000))) + "]\n", [],
     ["document expands to more than 20000 nodes (far larger than any grid)"]),
    ("many-megabytes", "name: x\n" + "# padding\n" * 600_000, [], ["file is 6000008 bytes; a grid file may have at most 1000000"]),
    ("duplicate-top-key", "name: x\ntrain: {epochs: 1}\nname: y\n", [], [":3: name: duplicate key (first given on line 1); give each key once"]),
    ("duplicate-nested-key", "name: x\ntrain:\n  epochs: 1\n  lr: 0.1\n  epochs: 100\n", [], [":5: epochs: duplicate key (first given on line 3)"]),
    ("huge-key", "name: x\n" + "k" * 1000 + ": 1\n", [], [":2: kkkkkkkkkk", "...: unknown key"]),
    ("huge-key-beyond-yaml", "name: x\n" + "k" * 5000 + ": 1\n", [], [":2: broken YAML: could not find expected ':'"]),
    ("huge-value", "name: x\nmethod: " + "v" * 100_000 + "\n", [], [":2: method: got 'vvvvvvvvvv", "...; expected one of 'simclr'"]),
    ("deep-block-nesting", "name: x\nseed:\n  " + "- " * 200_000 + "0\n", [], [":3: nested more than 32 levels deep"]),
    ("control-char-key", 'name: x\n"a\\u0007b": 1\n', [], [":2: a\\x07b: unknown key"]),
    ("many-problems", "name: x/y\ntrain: {epochs: 0, batch_size: 1, optimizer: adam}\ngrid:\n  pair: [crop, zoom]\n  seed: []\n", [],
     ["name: got 'x/y'", "train.epochs: got 0", "train.batch_size: got 1", "train.optimizer: got 'adam'",
      "grid.pair[1]: got 'zoom'", "grid.seed: empty axis"]),
    # --set: the problem is attributed to --set, not to a line of the file
    ("set-no-equals", VALID, ["train.epochs"], ["--set: train.epochs: expected PATH=VALUE, e.g. train.epochs=1"]),
    ("set-bad-path", VALID, ["train..epochs=1"], ["--set: train..epochs: not a dotted field path"]),
    ("set-empty-path", VALID, ["=1"], ["--set: '': not a dotted field path"]),
    ("set-unknown-field", VALID, ["trian.epochs=1"], ["--set: trian: unknown key (did you mean 'train'?)"]),
    ("set-wrong-type", VALID, ["train.epochs=zero"], ["--set: train.epochs: got 'zero'; input should be a valid integer"]),
    ("set-zero-epochs", VALID, ["train.epochs=0"], ["--set: train.epochs: got 0; input should be greater than or equal to 1"]),
    ("set-bad-name", VALID, ["name=../x"], ["--set: name: got '../x'; grid name '../x' is not a plain name"]),
    ("set-empty-axis", VALID, ["grid.seed=[]"], ["--set: grid.seed: empty axis"]),
    ("set-axis-not-list", VALID, ["grid.seed=3"], ["--set: grid.seed: got 3; input should be a valid list"]),
    ("set-bad-operator", VALID, ["grid.pair=[crop, zoom]"], ["--set: grid.pair[1]: got 'zoom'"]),
    ("set-alias-bomb", VALID, ["seed=" + BILLION_LAUGHS.split("\n", 1)[1].replace("\n", ", ").join("{}")],
     ["--set: seed: document expands to more than 20000 nodes"]),
    ("set-duplicate-key", VALID, ["train={epochs: 1, epochs: 2}"], ["--set: train: duplicate key"]),
]


def write_case(folder: Path, content: str | bytes | None) -> Path:
    path = folder / "grid.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, float, Path]]:
    """Every case run through the CLI, three at a time: id -> (process, seconds, its folder)."""
    def one(case) -> tuple[str, tuple[subprocess.CompletedProcess, float, Path]]:
        name, content, sets, _ = case
        folder = tmp_path_factory.mktemp(name)
        path = write_case(folder, content)
        args = ["run", path.name, "--quiet"] + [f"--set={value}" for value in sets]
        clock = time.perf_counter()
        process = ablate(*args, cwd=folder, timeout=120)
        return name, (process, time.perf_counter() - clock, folder)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize("name, content, sets, expected", CASES, ids=[case[0] for case in CASES])
def test_bad_input_exits_2_with_one_clear_line_per_problem(outcomes, name, content, sets, expected):
    process, seconds, folder = outcomes[name]
    assert process.returncode == 2, (process.stdout, process.stderr)
    assert "Traceback" not in process.stderr and process.stdout == ""
    lines = process.stderr.strip().splitlines()
    expected_lines = {"many-problems": 6, "duplicate-set-values": 2}.get(name, 1)
    assert len(lines) == expected_lines, lines
    for fragment in expected:
        assert any(fragment in line for line in lines), (fragment, lines)
    source = "--set" if sets and name.startswith("set-") else "grid.yaml"
    assert all(line.startswith(source) for line in lines), lines
    # Refused before anything happened: no results folder, no file written, no code run by a YAML tag.
    assert sorted(p.name for p in folder.iterdir()) == (["grid.yaml"] if content is not None else [])
    assert seconds < 20, f"took {seconds:.1f} s"
    assert max(map(len, lines)) < 400, "a message is one readable line"


def test_alias_bomb_is_refused_without_expanding(outcomes):
    # Expanded, the bomb would be 10^10 strings; refused it costs what an ordinary bad file costs.
    assert outcomes["alias-bomb"][1] < outcomes["unknown-method"][1] + 3


def test_cases_cover_the_issue_list():
    ids = {case[0] for case in CASES}
    for needed in ("empty-file", "binary-junk", "broken-yaml-bracket", "list-not-mapping", "unknown-top-key",
                   "wrong-type-int", "zero-epochs", "negative-epochs", "batch-size-1", "color-strength-0",
                   "color-strength-huge", "empty-axis", "duplicate-axis-values", "unknown-operator", "unknown-dataset",
                   "unknown-model", "unknown-method", "unknown-optimizer", "name-path-separator", "name-dotdot",
                   "tag-python-object", "alias-bomb", "many-megabytes", "duplicate-top-key"):
        assert needed in ids


def test_a_directory_is_not_a_grid_file(tmp_path):
    (tmp_path / "grids.yaml").mkdir()
    process = ablate("run", "grids.yaml", cwd=tmp_path)
    assert process.returncode == 2 and process.stderr == "grids.yaml: not a regular file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_grid_file(tmp_path):
    path = write_case(tmp_path, VALID)
    path.chmod(0)
    process = ablate("run", path.name, cwd=tmp_path)
    assert process.returncode == 2 and "cannot be read (Permission denied)" in process.stderr


# Bad values outside the grid file: environment variables a run reads, output folders, --device.
OUTSIDE_THE_GRID = [
    ("device-unknown", {"ABLATE_DEVICE": "nope"}, ["run", "grid.yaml", "--dry-run"],
     "ablate: ABLATE_DEVICE: 'nope' is not a device name; expected e.g. cpu or cuda"),
    ("compile-switch-not-0-or-1", {"ABLATE_COMPILE_COLOR": "yes"}, ["run", "grid.yaml", "--dry-run"],
     "ablate: ABLATE_COMPILE_COLOR is 'yes'; expected 1 (compile the colour distortion) or 0"),
    ("compile-switch-in-preview", {"ABLATE_COMPILE_COLOR": "2"}, ["preview", "grid.yaml"],
     "ablate: ABLATE_COMPILE_COLOR is '2'; expected 1 (compile the colour distortion) or 0"),
    ("grace-not-a-number", {"ABLATE_SLURM_GRACE_S": "abc"}, ["status", "grid.yaml"],
     "ablate: ABLATE_SLURM_GRACE_S is 'abc'; expected a number of seconds, 0 or more"),
    ("report-out-under-a-file", {}, ["report", "--grid", "ok", "--out", "afile/x"],
     "ablate: report folder afile/x cannot be created: afile is a file, not a folder; choose another with --out"),
    ("preview-out-under-a-file", {}, ["preview", "grid.yaml", "--out", "afile/x.png"],
     "ablate: preview folder afile cannot be created: afile is a file, not a folder; choose another with --out"),
]


@pytest.mark.parametrize("name, env, argv, message", OUTSIDE_THE_GRID, ids=[case[0] for case in OUTSIDE_THE_GRID])
def test_bad_environment_and_output_folders_exit_2_with_one_line(tmp_path, monkeypatch, capsys, name, env, argv, message):
    from ablate import cli

    write_case(tmp_path, VALID)
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == message + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "grid.yaml"]  # nothing written


@pytest.mark.slow
def test_an_unknown_bench_device_is_a_usage_error(tmp_path):
    process = ablate("bench", "augment", "--device", "nope", cwd=tmp_path)
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.splitlines()[-1] == "ablate bench: error: argument --device: 'nope' is not a device name; expected e.g. cpu or cuda"
