"""The root requirements.txt is exactly the union of functions/*/requirements.txt, and every function that
uses an SDK declares it (so a function's own bundle gets what it imports, and nothing is installed twice
with different pins)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIRS = sorted(path.parent for path in (ROOT / "functions").glob("*/handler.py"))

# Top-level module a function imports (directly or through shared/'s helpers) -> the distribution it needs.
SDK_DISTRIBUTIONS = {
    "cloudinary": "cloudinary",
    "sendgrid": "sendgrid",
    "python_http_client": "python-http-client",
    "boto3": "boto3",
    "botocore": "boto3",
    "requests": "requests",
    "psycopg2": "psycopg2-binary",
    "PIL": "pillow",
    "slack_sdk": "slack-sdk",
}
# shared/ modules that import an SDK on a function's behalf.
SHARED_HELPERS = {"shared.cloudinary_api": "cloudinary", "shared.sendgrid_api": "python-http-client",
                  "shared.postgres": "psycopg2-binary"}
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def parse_requirements(path: Path) -> dict[str, str]:
    """{normalised distribution name: normalised requirement line} of a requirements file."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{path}:{number}: options ({line}) do not belong in run-time requirements"
        match = _NAME.match(line)
        assert match, f"{path}:{number}: cannot read {raw!r}"
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        requirement = name + re.sub(r"\s+", "", line[match.end():])
        assert name not in found or found[name] == requirement, f"{path}: {name} listed twice, differently"
        found[name] = requirement
    return found


def sdk_distributions_used(function_dir: Path) -> set[str]:
    """Distributions the function's Python files import, at module level or inside functions."""
    used: set[str] = set()
    for source in function_dir.rglob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for module in modules:
                top = module.split(".")[0]
                if top in SDK_DISTRIBUTIONS:
                    used.add(SDK_DISTRIBUTIONS[top])
                if module in SHARED_HELPERS:
                    used.add(SHARED_HELPERS[module])
    return used


def test_there_are_functions_to_check():
    assert FUNCTION_DIRS, "no functions/*/handler.py found"


def test_root_requirements_are_exactly_the_union_of_the_functions():
    union: dict[str, str] = {}
    for function_dir in FUNCTION_DIRS:
        path = function_dir / "requirements.txt"
        if not path.exists():
            continue
        for name, requirement in parse_requirements(path).items():
            assert union.get(name, requirement) == requirement, (
                f"{name} is pinned differently by two functions: {union[name]} vs {requirement} ({path})")
            union[name] = requirement
    root = parse_requirements(ROOT / "requirements.txt")

    assert sorted(root.values()) == sorted(union.values()), (
        f"only in requirements.txt: {sorted(set(root.values()) - set(union.values()))}; "
        f"only in functions/*/requirements.txt: {sorted(set(union.values()) - set(root.values()))}")


@pytest.mark.parametrize("function_dir", FUNCTION_DIRS, ids=[path.name for path in FUNCTION_DIRS])
def test_each_function_declares_the_sdks_it_imports(function_dir):
    needed = sdk_distributions_used(function_dir)
    path = function_dir / "requirements.txt"
    if not needed:
        return
    assert path.exists(), f"{function_dir.name} imports {sorted(needed)} but has no requirements.txt"
    declared = set(parse_requirements(path))
    assert needed <= declared, f"{function_dir.name} imports {sorted(needed - declared)} without declaring it"


def test_the_sdk_scan_sees_imports_inside_functions(tmp_path):
    # Guard against a scan that finds nothing and so passes vacuously: the lazy imports the project uses.
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(
        "def f():\n    import boto3\n    from shared import cloudinary_api\n"
        "def g():\n    from sendgrid.helpers.mail import Mail\n    from psycopg2 import sql\n")
    assert sdk_distributions_used(folder) == {"boto3", "cloudinary", "sendgrid", "psycopg2-binary"}
    assert sdk_distributions_used(ROOT / "functions" / "hello_tag") == {"cloudinary"}


def test_requirement_lines_are_compared_normalised(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nPsycopg[binary] >= 3.1, <4  # why\n\nsendgrid>=6.11,<7\n")
    assert parse_requirements(path) == {"psycopg": "psycopg[binary]>=3.1,<4", "sendgrid": "sendgrid>=6.11,<7"}
