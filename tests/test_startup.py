"""Commands that neither train nor submit leave torch, kornia and submitit unimported (they take seconds to load).

Each case runs `ablate.cli.main` in a fresh Python process and reads back its exit status and which
of those packages ended up in sys.modules; a timing would depend on the machine, this does not.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.cli import EXECUTORS
from ablate.settings import EXECUTORS as SETTINGS_EXECUTORS

HEAVY = ("torch", "kornia", "submitit")

PROBE = """
import json, sys
from ablate.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:  # argparse: --help
    code = stop.code
print(json.dumps({"code": code, "loaded": [name for name in %r if name in sys.modules]}))
""" % (HEAVY,)

TYPO_GRID = "name: x\ngrid: {pair: [crop, zoom]}\n"  # zoom is no operator
TINY_GRID = """\
name: tiny
dataset: {name: shapes, train_size: 64, test_size: 32, image_size: 16}
grid:
  pair: [crop, color]
  seed: [0, 1]
"""


def probe(cwd: Path, *argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["run", "typo.yaml"], 2),
    (["run", "tiny.yaml", "--dry-run"], 0),
    (["status", "tiny.yaml"], 0),
], ids=["help", "run-typo", "dry-run", "status"])
def test_command_starts_without_torch_kornia_or_submitit(tmp_path, argv, code):
    (tmp_path / "typo.yaml").write_text(TYPO_GRID)
    (tmp_path / "tiny.yaml").write_text(TINY_GRID)
    seen = probe(tmp_path, *argv)
    assert seen == {"code": code, "loaded": []}


@pytest.mark.slow
def test_the_probe_sees_torch_when_a_command_needs_it(tmp_path, monkeypatch):
    """The same probe on a command that checks the device (ABLATE_DEVICE needs torch): torch is reported."""
    (tmp_path / "tiny.yaml").write_text(TINY_GRID)
    monkeypatch.setenv("ABLATE_DEVICE", "cpu")
    seen = probe(tmp_path, "preview", "tiny.yaml", "--ops", "zoom")  # device checked, then the bad operator: exit 2
    assert seen["code"] == 2 and "torch" in seen["loaded"]


def test_executor_choices_match_the_settings():
    """cli repeats the executor names so that --help loads no pydantic; both lists must agree."""
    assert EXECUTORS == SETTINGS_EXECUTORS


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("argv", [["run", "tiny.yaml"], ["preview", "tiny.yaml"]], ids=["run", "preview"])
def test_a_missing_cuda_device_stops_commands_that_train_or_preview(tmp_path, monkeypatch, capsys, argv):
    """ABLATE_DEVICE=cuda on a machine without one: one line, exit 2, nothing written; --dry-run does not need the device."""
    from ablate.cli import main

    (tmp_path / "tiny.yaml").write_text(TINY_GRID)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_DEVICE", "cuda")
    assert main(argv) == 2
    assert capsys.readouterr().err == "ablate: ABLATE_DEVICE: 'cuda': this machine has no CUDA device\n"
    assert main(["run", "tiny.yaml", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "grid tiny: 8 runs, 0 done or skipped, 8 to run"  # 4 ordered pairs × 2 seeds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
