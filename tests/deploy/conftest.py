"""Bundles are built once per test session, offline, from the wheels `make test` downloads beforehand
into .cache/wheels/<python>-<architecture> (tests never reach the network).

These bundles are for this machine's Python and CPU, so that a clean interpreter here can run them; the
bundles for Lambda's own runtime and both architectures are tested in tests/platform/aws_lambda.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from devtools import bundle, deploy

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
ARCHITECTURE = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def wheel_dir(python_version: str, architecture: str) -> Path:
    return deploy.PROJECT_ROOT / ".cache" / "wheels" / f"{python_version}-{architecture}"


WHEELS = wheel_dir(PYTHON_VERSION, ARCHITECTURE)


def build(name: str, out_dir: Path, python_version: str = PYTHON_VERSION,
          architecture: str = ARCHITECTURE) -> bundle.Bundle:
    wheels = wheel_dir(python_version, architecture)
    if not any(wheels.glob("*.whl")):
        pytest.fail(f"No wheels in {wheels}: run the tests with `make test` (scripts/test.sh downloads them "
                    "before pytest, so the tests themselves stay offline).")
    return bundle.build_bundle(name, out_dir=out_dir, python_version=python_version, architecture=architecture,
                               find_links=wheels, no_index=True)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, bundle.Bundle]:
    out_dir = tmp_path_factory.mktemp("dist")
    return {name: build(name, out_dir) for name in deploy.function_names()}
