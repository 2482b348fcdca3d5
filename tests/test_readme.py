"""The user documentation points at things that exist: every repository path that README.md,
docs/recipes.md and benchmarks/README.md name (links, `code` spans, fenced commands) and every
`ablate.module.Name` they cite; and the README's first screen holds the two commands, the second of
them exactly the test command that CI runs (.ci/run)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/recipes.md", "benchmarks/README.md")
FIRST_SCREEN_LINES = 40
QUICKSTART_COMMAND = "pip install -e . && ablate run grids/quickstart.yaml && ablate report --heatmap"
TEST_COMMAND = "pip install -e '.[test]' && pytest"

# Top-level entries of the repository: a code token starting with one of these and a '/' is a path.
REPOSITORY_ROOTS = ("ablate", "tests", "grids", "benchmarks", "docs", "reports", ".ci")
PLACEHOLDER = re.compile(r"[<>{}*]|NAME|FILE")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOTTED = re.compile(r"^ablate(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def link_targets(text: str, folder: str) -> list[str]:
    """Repository-relative targets of the Markdown links and images (web addresses and anchors left out)."""
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        targets.append(os.path.normpath(os.path.join(folder, target.split("#")[0])))
    return targets


def code_tokens(text: str) -> list[str]:
    """Whitespace-separated tokens of fenced blocks and `code` spans, stripped of quotes and punctuation."""
    fenced = FENCE.findall(text)
    spans = CODE_SPAN.findall(FENCE.sub("", text))
    return [token.strip("'\"(),;:") for chunk in fenced + spans for token in chunk.split()]


def code_paths(text: str) -> list[str]:
    """Tokens that name a repository path (written from the repository root, as code spans are)."""
    return [t for t in code_tokens(text) if "/" in t and t.split("/")[0] in REPOSITORY_ROOTS]


def missing_path(path: str) -> str | None:
    """None when `path` exists; for a pattern such as ablate/methods/<name>.py, when its fixed folder does."""
    parts = path.rstrip("/").split("/")
    fixed = []
    for part in parts:
        if PLACEHOLDER.search(part):
            break
        fixed.append(part)
    whole = len(fixed) == len(parts)
    candidate = ROOT.joinpath(*fixed)
    exists = (candidate.exists() and (not path.endswith("/") or candidate.is_dir())) if whole else candidate.is_dir()
    return None if exists else path


def missing_dotted(name: str) -> str | None:
    """None when ablate.a.b[.Name] is a module of this checkout (and Name appears in it)."""
    parts = name.split(".")
    folder = ROOT / parts[0]
    for index, part in enumerate(parts[1:], start=1):
        if (folder / part).is_dir():
            folder = folder / part
            continue
        module = folder / f"{part}.py"
        if module.is_file():
            rest = parts[index + 1:]
            return None if not rest or re.search(rf"\b{rest[0]}\b", module.read_text(encoding="utf-8")) else name
        init = folder / "__init__.py"
        found = init.is_file() and re.search(rf"\b{part}\b", init.read_text(encoding="utf-8"))
        return None if found and index == len(parts) - 1 else name
    return None


def problems_in(document: str, text: str) -> list[str]:
    folder = os.path.dirname(document)
    paths = [p for p in link_targets(text, folder) if missing_path(p)]
    paths += [p for p in code_paths(text) if missing_path(p)]
    names = [t for t in code_tokens(text) if DOTTED.match(t) and missing_dotted(t)]
    return sorted(set(paths + names))


# ------------------------------------------------------------------------------ the checker itself


def test_the_checker_finds_what_is_missing_and_accepts_what_exists():
    text = (
        "See [the store](ablate/store.py), ![gone](reports/nowhere.png) and [web](https://example.org/x.py).\n"
        "Edit `ablate/methods/<name>.py` or `ablate/nothing_here/<name>.py`; run `pytest tests/test_nowhere.py`.\n"
        "```bash\nablate run grids/quickstart.yaml --set dataset.root=/data/cifar10\nablate run grids/absent.yaml\n```\n"
        "Registries: `ablate.data.LOADERS`, `ablate.models.NO_SUCH_NAME`, `ablate.no_module`.\n"
    )
    assert problems_in("README.md", text) == [
        "ablate.models.NO_SUCH_NAME", "ablate.no_module", "ablate/nothing_here/<name>.py", "grids/absent.yaml",
        "reports/nowhere.png", "tests/test_nowhere.py",
    ]


def test_links_from_a_sub_folder_are_resolved_from_that_folder():
    assert link_targets("[bench](../ablate/bench.py) [file](results/train-cpu.md#notes)", "benchmarks") == [
        "ablate/bench.py", "benchmarks/results/train-cpu.md",
    ]


# --------------------------------------------------------------------------------- the documents


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_path_a_document_names_exists(document: str):
    text = (ROOT / document).read_text(encoding="utf-8")
    assert problems_in(document, text) == []


def test_the_first_screen_holds_both_commands_and_the_test_command_is_the_one_ci_runs():
    first_screen = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN_LINES]
    assert QUICKSTART_COMMAND in first_screen
    assert TEST_COMMAND in first_screen
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
