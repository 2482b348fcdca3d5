"""ABLATE_* variables: defaults, values read, and one line naming the variable for a bad value."""

import re
from pathlib import Path

import pytest

from ablate.settings import SettingsError, load_settings


def test_defaults_when_nothing_is_set():
    settings = load_settings({})
    assert settings.data is None and settings.cache == Path.home() / ".cache" / "ablate" and settings.data_mirror is None
    assert settings.device is None and settings.executor is None and settings.slurm_grace_s == 30.0
    assert settings.compile_color is False and settings.keep_freed_memory is True
    assert settings.dist_timeout_s == 600.0  # torch's NCCL default
    assert load_settings({"ABLATE_DIST_TIMEOUT_S": "4.5"}).dist_timeout_s == 4.5


def test_values_are_read_and_converted():
    settings = load_settings({
        "ABLATE_DATA": "~/datasets", "ABLATE_CACHE": "/tmp/c", "ABLATE_DEVICE": "cuda:1", "ABLATE_EXECUTOR": "slurm",
        "ABLATE_SLURM_GRACE_S": "2.5", "ABLATE_COMPILE_COLOR": "1", "ABLATE_KEEP_FREED_MEMORY": "0",
        "ABLATE_DATA_MIRROR": "http://127.0.0.1:8000/datasets",
    })
    assert settings.data_mirror == "http://127.0.0.1:8000/datasets"
    assert settings.data == Path.home() / "datasets" and settings.cache == Path("/tmp/c")
    assert settings.device == "cuda:1" and settings.executor == "slurm" and settings.slurm_grace_s == 2.5
    assert settings.compile_color is True and settings.keep_freed_memory is False


def test_an_empty_variable_means_not_set():
    assert load_settings({"ABLATE_DEVICE": "", "ABLATE_COMPILE_COLOR": " ", "ABLATE_DATA": ""}) == load_settings({})


def test_the_process_environment_is_read_at_each_call(monkeypatch):
    monkeypatch.setenv("ABLATE_SLURM_GRACE_S", "7")
    assert load_settings().slurm_grace_s == 7.0
    monkeypatch.setenv("ABLATE_SLURM_GRACE_S", "0")
    assert load_settings().slurm_grace_s == 0.0


@pytest.mark.parametrize("variable,value,message", [
    ("ABLATE_DEVICE", "mps", "ABLATE_DEVICE: 'mps': ablate runs on cpu or cuda"),
    ("ABLATE_DEVICE", "gpu 0", "ABLATE_DEVICE: 'gpu 0' is not a device name; expected e.g. cpu or cuda"),
    ("ABLATE_EXECUTOR", "k8s", "ABLATE_EXECUTOR is 'k8s'; expected one of auto, local, slurm"),
    ("ABLATE_SLURM_GRACE_S", "soon", "ABLATE_SLURM_GRACE_S is 'soon'; expected a number of seconds, 0 or more"),
    ("ABLATE_SLURM_GRACE_S", "-1", "ABLATE_SLURM_GRACE_S is '-1'; expected a number of seconds, 0 or more"),
    ("ABLATE_SLURM_GRACE_S", "nan", "ABLATE_SLURM_GRACE_S is 'nan'; expected a number of seconds, 0 or more"),
    ("ABLATE_COMPILE_COLOR", "yes", "ABLATE_COMPILE_COLOR is 'yes'; expected 1 (compile the colour distortion) or 0"),
    ("ABLATE_DATA_MIRROR", "ftp://mirror/data", "ABLATE_DATA_MIRROR is 'ftp://mirror/data'; expected an http:// or https:// address"),
    ("ABLATE_DATA_MIRROR", "/srv/data", "ABLATE_DATA_MIRROR is '/srv/data'; expected an http:// or https:// address"),
    ("ABLATE_DIST_TIMEOUT_S", "0", "ABLATE_DIST_TIMEOUT_S is '0'; expected a number of seconds above 0"),
    ("ABLATE_DIST_TIMEOUT_S", "-5", "ABLATE_DIST_TIMEOUT_S is '-5'; expected a number of seconds above 0"),
    ("ABLATE_DIST_TIMEOUT_S", "ten", "ABLATE_DIST_TIMEOUT_S is 'ten'; expected a number of seconds above 0"),
    ("ABLATE_KEEP_FREED_MEMORY", "off", "ABLATE_KEEP_FREED_MEMORY is 'off'; expected 1 (keep freed memory in CPU runs) or 0"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable, value, message):
    with pytest.raises(SettingsError) as raised:
        load_settings({variable: value})
    assert str(raised.value) == message


def test_no_module_reads_an_ablate_variable_itself():
    """settings.py is the one reader: any other `environ` use with an ABLATE_ name would bypass its checks."""
    package = Path(__file__).parents[1] / "ablate"
    readers = [path.relative_to(package).as_posix() for path in package.rglob("*.py")
               if path.name != "settings.py" and any("ABLATE_" in line and re.search(r"os\.environ|getenv", line)
                                                     for line in path.read_text().splitlines())]
    assert readers == []
