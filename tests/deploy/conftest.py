"""Bundles are built once per test session, offline, from the wheels `make test` downloads beforehand
into .cache/wheels (tests never reach the network)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared import deploy

WHEELS = deploy.PROJECT_ROOT / ".cache" / "wheels"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def build(name: str, out_dir: Path) -> deploy.Bundle:
    if not any(WHEELS.glob("*.whl")):
        pytest.fail(f"No wheels in {WHEELS}: run the tests with `make test` (scripts/test.sh downloads them "
                    "before pytest, so the tests themselves stay offline).")
    return deploy.build_bundle(name, out_dir=out_dir, python_version=PYTHON_VERSION, find_links=WHEELS,
                               no_index=True)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, deploy.Bundle]:
    out_dir = tmp_path_factory.mktemp("dist")
    return {name: build(name, out_dir) for name in deploy.function_names()}
