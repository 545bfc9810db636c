"""Run a bundle the way AWS Lambda's python3.12 runtime does, on this machine and offline.

- the interpreter: Python 3.12 with AWS's runtime interface client (``awslambdaric``) and the runtime's boto3,
  made by ``scripts/platform/lambda.sh``; the function's own dependencies must come from its bundle;
- the code: the bundle unzipped into a folder nobody can write to (directories 0555, files 0444), the
  working directory, ``LAMBDA_TASK_ROOT`` and ``PYTHONPATH``, as ``/var/task`` is;
- the user: not root (Lambda runs functions as an unprivileged ``sbx_user``): ``nobody`` when the tests
  run as root, with no supplementary groups;
- the environment: what Lambda sets (``AWS_LAMBDA_*``, ``AWS_REGION``, credentials, ``LD_LIBRARY_PATH``, an
  unwritable ``HOME``) plus the function's ``Environment`` from ``template.yaml``, with its ``!Ref`` parameters
  at their defaults and its Secrets Manager references replaced by test values;
- the loop: ``python -m awslambdaric <Handler from template.yaml>`` polling a local Runtime API stand-in.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT
from tests.platform.aws_lambda.runtime_api import REGION, Invocation, RuntimeAPI

PYTHON_VERSION = "3.12"  # template.yaml's Runtime: python3.12
ARCHITECTURES = ("x86_64", "arm64")
# This machine runs the bundles of its own architecture; the other architecture's are only inspected.
HERE = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
# Functions with compiled dependencies: Pillow (face_tagging), psycopg2-binary (asset_sync).
INSPECTED_ELSEWHERE = ("face_tagging", "asset_sync")
SETUP_SCRIPT = ROOT / "scripts" / "platform" / "lambda.sh"
VENV = ROOT / ".cache" / "platform" / "lambda-py312"
LAMBDA_PYTHON = VENV / "bin" / "python"
TEMPLATE = ROOT / "template.yaml"
SECRET_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:\$\{SecretName\}:SecretString:(\w+)\}\}")


# --- the interpreter -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LambdaPython:
    executable: Path
    lib_dir: Path  # the base installation's lib/ (libpython), first on LD_LIBRARY_PATH as /var/lang/lib is
    magic: bytes  # importlib.util.MAGIC_NUMBER of this Python: what its .pyc files start with
    site_packages: Path


def lambda_python() -> LambdaPython:
    if not LAMBDA_PYTHON.exists():
        pytest.fail(f"No Lambda interpreter at {LAMBDA_PYTHON}. Create it with `bash scripts/platform/lambda.sh` "
                    "(needs network once; `make test` runs it before pytest so the tests stay offline).",
                    pytrace=False)
    # Resolved: lambda.sh links the venv from a folder the unprivileged user can enter when this checkout
    # lies in one it cannot (then every path the probe reports must be the real one).
    executable = LAMBDA_PYTHON.parent.resolve() / LAMBDA_PYTHON.name
    probe = subprocess.run(
        [str(executable), "-c", "import importlib.metadata, importlib.util, json, sys, sysconfig, awslambdaric; "
         "print(json.dumps({'version': sys.version_info[:2], 'base': sys.base_prefix, "
         "'magic': importlib.util.MAGIC_NUMBER.hex(), 'site': sysconfig.get_paths()['purelib'], "
         "'awslambdaric': importlib.metadata.version('awslambdaric')}))"],
        capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.fail(f"{LAMBDA_PYTHON} does not import awslambdaric; rerun `bash scripts/platform/lambda.sh`:\n"
                    f"{probe.stderr[-2000:]}", pytrace=False)
    found = json.loads(probe.stdout)
    assert tuple(found["version"]) == (3, 12), f"{LAMBDA_PYTHON} is Python {found['version']}, not 3.12"
    pinned = re.search(r"^AWSLAMBDARIC_VERSION=(\S+)", SETUP_SCRIPT.read_text(), re.MULTILINE)
    if pinned and pinned.group(1) != found["awslambdaric"]:
        pytest.fail(f"{LAMBDA_PYTHON} has awslambdaric {found['awslambdaric']}, {SETUP_SCRIPT.name} pins "
                    f"{pinned.group(1)}: rerun `bash scripts/platform/lambda.sh`", pytrace=False)
    return LambdaPython(executable, Path(found["base"]) / "lib", bytes.fromhex(found["magic"]),
                        Path(found["site"]))


# --- the code, read-only ---------------------------------------------------------------------------------

def scratch_dir(prefix: str) -> Path:
    """A directory the unprivileged user can reach (pytest's tmp_path lies under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def unzip_read_only(archive: Path, target: Path) -> Path:
    """Unzip ``archive`` into ``target`` and make every directory 0555 and every file 0444."""
    target.mkdir()
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(target)
    for directory, _, files in os.walk(target):
        for name in files:
            os.chmod(os.path.join(directory, name), 0o444)
    for directory, _, _ in sorted(os.walk(target), key=lambda entry: -len(entry[0])):
        os.chmod(directory, 0o555)  # noqa: S103 (read and list only: Lambda's /var/task)
    return target


def remove_tree(path: Path) -> None:
    """Remove a tree made read-only above (root may anyway; another user must first make it writable)."""
    if not path.exists():
        return
    for directory, _, _ in os.walk(path):
        os.chmod(directory, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


# --- template.yaml ---------------------------------------------------------------------------------------

class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt...) kept as ("Ref", value)."""


_CloudFormationLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: (suffix, loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
                                       else loader.construct_sequence(node)))


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)  # noqa: S506 (SafeLoader subclass)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    timeout: int
    memory: int
    log_format: str  # LoggingConfig's LogFormat: "Text" or "JSON"
    environment: dict[str, str]


def function_spec(name: str, secrets: dict[str, str | None], parameters: dict[str, str]) -> FunctionSpec:
    """The function ``name`` as template.yaml deploys it; ``!Ref``s resolve to ``parameters`` or the template
    parameter's default, Secrets Manager references to ``secrets``: a reference not in ``secrets`` fails the
    test, one whose value is None leaves the variable out (a deployment that forgot it)."""
    document = template()
    defaults = {key: str(value.get("Default", "")) for key, value in document.get("Parameters", {}).items()}
    for resource in document["Resources"].values():
        properties = resource.get("Properties", {})
        if resource.get("Type") != "AWS::Serverless::Function" or properties.get("CodeUri") != f"dist/{name}.zip":
            continue
        environment = {}
        for variable, value in (properties.get("Environment", {}).get("Variables") or {}).items():
            if isinstance(value, tuple) and value[0] == "Ref":
                environment[variable] = parameters.get(value[1], defaults.get(value[1], ""))
            elif isinstance(value, tuple) and value[0] == "Sub" and SECRET_REFERENCE.fullmatch(value[1]):
                key = SECRET_REFERENCE.fullmatch(value[1]).group(1)
                if key not in secrets:
                    pytest.fail(f"template.yaml gives {name} the secret {key}; the platform test has no stand-in "
                                "value for it (add one to the test's secrets)", pytrace=False)
                if secrets[key] is not None:
                    environment[variable] = secrets[key]
            elif isinstance(value, str | int | float):
                environment[variable] = str(value)
            else:
                pytest.fail(f"template.yaml: {name}'s {variable} is {value!r}, which this test cannot resolve",
                            pytrace=False)
        globals_ = document.get("Globals", {}).get("Function", {})
        timeout = int(properties.get("Timeout", globals_.get("Timeout", 3)))
        memory = int(properties.get("MemorySize", globals_.get("MemorySize", 128)))
        logging = {**(globals_.get("LoggingConfig") or {}), **(properties.get("LoggingConfig") or {})}
        return FunctionSpec(name, properties["Handler"], timeout, memory, logging.get("LogFormat", "Text"),
                            environment)
    pytest.fail(f"template.yaml has no function with CodeUri dist/{name}.zip", pytrace=False)


# --- events ----------------------------------------------------------------------------------------------

def function_url_event(body: bytes, headers: dict[str, str], *, method: str = "POST", base64_body: bool = False,
                       query: str = "") -> dict[str, Any]:
    """A Lambda Function URL invocation (payload format 2.0), as Lambda builds it from an HTTP request."""
    now = time.time()
    host = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
    lower = {name.lower(): value for name, value in headers.items()}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": query,
        "headers": {**lower, "host": host, "user-agent": "Cloudinary", "x-forwarded-proto": "https",
                    "x-forwarded-port": "443", "x-forwarded-for": "54.242.9.131",
                    "x-amzn-trace-id": "Root=1-65f0a1b2-0123456789abcdef01234567"},
        **({"queryStringParameters": dict(pair.split("=", 1) for pair in query.split("&"))} if query else {}),
        "requestContext": {
            "accountId": "anonymous", "apiId": host.split(".")[0], "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "54.242.9.131",
                     "userAgent": "Cloudinary"},
            "requestId": "d2b3b3a0-7e2f-4c3e-9f5e-2c1b0a9d8e7f", "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        **({"body": base64.b64encode(body).decode("ascii") if base64_body else body.decode("utf-8")} if body else {}),
        "isBase64Encoded": base64_body,
    }


# --- the runtime process ---------------------------------------------------------------------------------

def unprivileged() -> dict[str, Any]:
    """subprocess arguments that drop to ``nobody`` (no supplementary groups) when we are root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


class LambdaRuntime:
    """One execution environment: ``python -m awslambdaric`` for one function, fed invocations in turn."""

    def __init__(self, python: LambdaPython, task_root: Path, spec: FunctionSpec, home: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.api = RuntimeAPI(spec.name, spec.timeout)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        environment = {
            # what Lambda's python3.12 runtime sets (values of the same shape)
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(python.site_packages),
            "_HANDLER": spec.handler,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
            "AWS_LAMBDA_LOG_FORMAT": spec.log_format,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEPLATFORMTEST",
            "AWS_SECRET_ACCESS_KEY": "platform-test-secret-access-key",
            "AWS_SESSION_TOKEN": "platform-test-session-token",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "LD_LIBRARY_PATH": ":".join(map(str, (python.lib_dir, "/lib64", "/usr/lib64", python.site_packages,
                                                  task_root, f"{task_root}/lib", "/opt/lib"))),
            "PYTHONPATH": str(task_root),
            "HOME": str(home),
            # Not Lambda's: anything that tries to leave this machine fails at once instead of reaching out.
            "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            **spec.environment,
            **(extra_env or {}),
        }
        self.environment = {key: value for key, value in environment.items() if value is not None}
        self.process = subprocess.Popen(
            [str(python.executable), "-m", "awslambdaric", spec.handler],
            cwd=task_root, env=self.environment, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, **unprivileged())

    def invoke(self, event: dict[str, Any], wait_seconds: float = 30.0) -> Invocation:
        """Hand ``event`` to the runtime and wait for what it posts back."""
        invocation = self.api.queue(event)
        deadline = time.monotonic() + wait_seconds
        while not invocation.done.wait(0.05):
            if self.process.poll() is not None:
                pytest.fail(f"{self.spec.name}: the runtime exited ({self.process.returncode}) before answering; "
                            f"init errors {self.api.init_errors}; its output:\n{self.output()[-4000:]}",
                            pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.spec.name}: no answer within {wait_seconds} s; its output:\n"
                            f"{self.output()[-4000:]}", pytrace=False)
        return invocation

    def output(self) -> str:
        """Everything the runtime printed: awslambdaric's log lines and the function's (CloudWatch's view)."""
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def user_id(self) -> int:
        """The real user id the runtime process runs as (from /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))

    def log_records(self) -> list[tuple[str | None, str]]:
        """(request id, message) of each log record, in the runtime's Text or JSON log format."""
        records: list[tuple[str | None, str]] = []
        for line in self.output().splitlines():
            if self.spec.log_format == "JSON":
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                message = record.get("message")
                records.append((record.get("requestId"), message if isinstance(message, str) else json.dumps(message)))
            else:  # "[LEVEL]\t<time>Z\t<request id>\t<message>"
                parts = line.split("\t", 3)
                if len(parts) == 4 and parts[0].startswith("["):
                    records.append((parts[2], parts[3]))
        return records

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # Lambda freezes, then discards, an environment: no shutdown to wait for
        self.process.wait(10)
        self.api.stop()
        self.log.close()


def http_response(invocation: Invocation) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(statusCode, JSON body, headers) of the response a function returned for a Function URL."""
    assert invocation.kind == "response", f"the runtime reported an error: {invocation.body[:2000]!r}"
    assert invocation.headers.get("content-type", "").startswith("application/json")
    answer = invocation.payload
    assert isinstance(answer, dict) and isinstance(answer.get("statusCode"), int), answer
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    return answer["statusCode"], json.loads(body) if body else {}, answer.get("headers") or {}
