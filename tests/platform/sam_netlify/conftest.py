"""Session fixtures of the SAM and Netlify platform tests: AWS's SAM transform and cfn-lint (the venv of
scripts/platform/sam.sh) and Netlify's config and redirect code (the node_modules of scripts/platform/netlify.sh),
each run once on the committed template.yaml / netlify.toml. Installs happen in those scripts, before pytest:
here nothing reaches the network, and a missing or stale tool is a failure naming its script, never a skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

HERE = Path(__file__).resolve().parent
TEMPLATE = ROOT / "template.yaml"
SAM_SCRIPT = ROOT / "scripts" / "platform" / "sam.sh"
SAM_VENV = ROOT / ".cache" / "platform" / "sam"
NETLIFY_SCRIPT = ROOT / "scripts" / "platform" / "netlify.sh"
NETLIFY_MODULES = ROOT / ".cache" / "platform" / "netlify" / "node_modules"
# The subprocesses get this environment and no other: no credentials, no AWS configuration, no instance metadata.
TOOL_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def _missing(script: Path, what: str) -> None:
    pytest.fail(f"{what}: run `bash {script.relative_to(ROOT)}` (`make test` runs it before pytest, so that the "
                "tests themselves stay offline).", pytrace=False)


def sam_pins() -> dict[str, str]:
    """The exact versions scripts/platform/sam.sh installs, by package name."""
    text = SAM_SCRIPT.read_text()
    return {package: re.search(rf"^{variable}=(\S+)", text, re.M).group(1)
            for package, variable in (("aws-sam-translator", "AWS_SAM_TRANSLATOR_VERSION"),
                                      ("cfn-lint", "CFN_LINT_VERSION"),
                                      ("cfn-lint-serverless", "CFN_LINT_SERVERLESS_VERSION"))}


def run_tool(command: list[str], *, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=TOOL_ENV, cwd=ROOT,
                          timeout=timeout, check=False)


# What `sam validate --lint` runs: cfnlint.api.lint on the template's text with default settings.
_SAM_LINT = ("import sys; from cfnlint.api import ManualArgs, lint; "
             "matches = lint(open(sys.argv[1]).read(), config=ManualArgs()); "
             "print('\\n'.join(str(match) for match in matches)); sys.exit(1 if matches else 0)")


def sam_lint(sam_python: Path, template: Path) -> subprocess.CompletedProcess:
    """`sam validate --lint` on ``template``, with SAM's own cfn-lint: exit status 0 when it finds nothing."""
    return run_tool([str(sam_python), "-c", _SAM_LINT, str(template)])


# --- SAM ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sam_python() -> Path:
    python = SAM_VENV / "bin" / "python"
    if not (python.exists() and (SAM_VENV / ".stamp").exists()):
        _missing(SAM_SCRIPT, f"No SAM tools in {SAM_VENV.relative_to(ROOT)}")
    return python


@pytest.fixture(scope="session")
def sam_transformed(sam_python) -> dict[str, Any]:
    """template.yaml after AWS's SAM transform: the CloudFormation template a stack is made of."""
    result = run_tool([str(sam_python), str(HERE / "sam_transform.py"), str(TEMPLATE)])
    assert result.returncode == 0, f"the SAM transform refused template.yaml:\n{result.stderr[-4000:]}"
    output = json.loads(result.stdout)
    if output["versions"] != sam_pins():
        _missing(SAM_SCRIPT, f"{SAM_VENV.relative_to(ROOT)} holds {output['versions']}, not the pins {sam_pins()}")
    return output["template"]


@pytest.fixture(scope="session")
def log_retention_days(sam_python) -> list[int]:
    """The retention periods AWS::Logs::LogGroup accepts, from the CloudFormation schema cfn-lint ships."""
    code = ("import json; from cfnlint.schema import PROVIDER_SCHEMA_MANAGER as m; "
            "print(json.dumps(m.get_resource_schema('us-east-1', 'AWS::Logs::LogGroup')"
            ".schema['properties']['RetentionInDays']['enum']))")
    result = run_tool([str(sam_python), "-c", code])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- Netlify -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def node() -> str:
    binary = shutil.which("node")
    if binary is None:
        _missing(NETLIFY_SCRIPT, "No node on PATH")
    return binary


@pytest.fixture(scope="session")
def netlify_routes(node):
    """routes(paths) -> what Netlify's code makes of netlify.toml, and the rule each path matches (or None)."""
    if not (NETLIFY_MODULES.is_dir() and (NETLIFY_MODULES.parent / ".stamp").exists()):
        _missing(NETLIFY_SCRIPT, f"No Netlify packages in {NETLIFY_MODULES.relative_to(ROOT)}")
    pins = json.loads((HERE / "package.json").read_text())["dependencies"]

    def routes(paths: list[str]) -> dict[str, Any]:
        result = run_tool([node, str(HERE / "netlify_routes.mjs"), str(NETLIFY_MODULES), str(ROOT)],
                          stdin=json.dumps(paths))
        assert result.returncode == 0, f"Netlify's code refused netlify.toml:\n{result.stderr[-4000:]}"
        output = json.loads(result.stdout)
        if output["versions"] != pins:
            _missing(NETLIFY_SCRIPT, f"{NETLIFY_MODULES.relative_to(ROOT)} holds {output['versions']}, "
                                     f"not the pins {pins}")
        return output

    return routes
