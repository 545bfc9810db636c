"""Session fixtures of the AWS Lambda platform tests: the Lambda interpreter, and every bundle built once,
offline, from the wheels `make test` downloads beforehand into .cache/wheels/3.12-<architecture>."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools import bundle as bundles_module
from devtools.deploy import function_names
from tests.helpers import ROOT
from tests.platform.aws_lambda import harness
from tests.platform.aws_lambda.harness import ARCHITECTURES, HERE, INSPECTED_ELSEWHERE, PYTHON_VERSION


def wheel_dir(architecture: str) -> Path:
    wheels = ROOT / ".cache" / "wheels" / f"{PYTHON_VERSION}-{architecture}"
    if not any(wheels.glob("*.whl")):
        pytest.fail(f"No wheels in {wheels}: run the tests with `make test` (scripts/test.sh downloads them before "
                    "pytest, so the tests themselves stay offline).", pytrace=False)
    return wheels


@pytest.fixture(scope="session")
def lambda_py() -> harness.LambdaPython:
    return harness.lambda_python()


@pytest.fixture(scope="session")
def lambda_bundles(tmp_path_factory) -> dict[tuple[str, str], bundles_module.Bundle]:
    """{(name, architecture): Bundle}: every function for this machine's architecture, and the functions with
    compiled dependencies for the other one. Built concurrently (pip and zlib wait on I/O and C code)."""
    jobs = [(name, HERE) for name in function_names()]
    jobs += [(name, architecture) for architecture in ARCHITECTURES if architecture != HERE
             for name in INSPECTED_ELSEWHERE]
    out = {architecture: tmp_path_factory.mktemp(f"lambda-{architecture}") for architecture in ARCHITECTURES}
    wheels = {architecture: wheel_dir(architecture) for architecture in ARCHITECTURES}

    def build(job: tuple[str, str]) -> bundles_module.Bundle:
        name, architecture = job
        return bundles_module.build_bundle(name, out_dir=out[architecture], python_version=PYTHON_VERSION,
                                           architecture=architecture, find_links=wheels[architecture],
                                           no_index=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(build, jobs), strict=True))


@pytest.fixture(scope="session")
def task_roots(lambda_bundles):
    """{name: read-only folder}: each bundle of this machine's architecture unzipped as Lambda's /var/task."""
    base = harness.scratch_dir("lambda-task-")
    roots = {name: harness.unzip_read_only(bundle.path, base / name)
             for (name, architecture), bundle in lambda_bundles.items() if architecture == HERE}
    yield roots
    harness.remove_tree(base)


@pytest.fixture(scope="session")
def unwritable_home():
    base = harness.scratch_dir("lambda-home-")
    home = base / "home"
    home.mkdir(mode=0o555)
    home.chmod(0o555)
    yield home
    harness.remove_tree(base)
