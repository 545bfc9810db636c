"""AWS Lambda bundles: ``python -m shared bundle NAME`` builds ``dist/NAME.zip``.

A bundle holds what a request executes and nothing else: ``shared/`` (the run-time package), the
function's folder (without samples, README, its ``__main__`` commands or benchmarks), and its pip
dependencies, as wheels for the *deployed* platform (deploy.toml's ``runtime`` and ``architecture``), not
for the machine that builds it. Every module ships compiled for the target Python (``unchecked-hash``
bytecode: Lambda's disk is read-only, so without it every cold start compiles what it imports again).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from devtools.deploy import PROJECT_ROOT, load_config

DIST = PROJECT_ROOT / "dist"
LAMBDA_ZIPPED_LIMIT = 50 * 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# The Lambda Python runtime ships boto3; bundling it would add ~15 MB for nothing, unless pinned.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath"}
# Lambda's architectures and the wheel platforms that run there. The python3.12+ runtimes run on Amazon
# Linux 2023 (glibc 2.34): manylinux_2_28 wheels (Pillow's) work, and manylinux2014 ones (psycopg2-binary's).
PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
}
# Developer tooling that lives beside the run-time code but never runs in a request.
TOOLING = ("__pycache__", "*.pyc", "samples", "README.md", "requirements.txt", "__main__.py", "bench.py")


@dataclass
class Bundle:
    name: str
    path: Path
    zipped: int
    unzipped: int
    files: int
    architecture: str
    python_version: str
    compiled: bool


def target(name: str | None = None) -> tuple[str, str]:
    """(python_version, architecture) a function is deployed with, from deploy.toml."""
    config = load_config()
    settings = {**config.get("defaults", {}), **config.get("functions", {}).get(name or "", {})}
    runtime = str(settings.get("runtime", "python3.12"))
    if not runtime.startswith("python"):
        raise SystemExit(f"deploy.toml: runtime {runtime!r} is not a Python runtime")
    architecture = str(settings.get("architecture", "x86_64"))
    if architecture not in PLATFORMS:
        raise SystemExit(f"deploy.toml: architecture must be one of {', '.join(PLATFORMS)}, not {architecture!r}")
    return runtime.removeprefix("python"), architecture


def bundle_requirements(name: str) -> list[str]:
    """The function's requirements, without what the Lambda runtime already provides (unless pinned)."""
    path = PROJECT_ROOT / "functions" / name / "requirements.txt"
    if not path.exists():
        return []
    wanted = []
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        if _project(requirement) in RUNTIME_PROVIDED and "==" not in requirement:
            continue
        wanted.append(requirement)
    from devtools import deploy  # poll delivery: the dead-letter store's PostgreSQL driver too

    if deploy.delivery_of(name) == "poll":
        projects = {_project(requirement) for requirement in wanted}
        wanted += [extra for extra in deploy.POLL_REQUIREMENTS if _project(extra) not in projects]
    return wanted


def _project(requirement: str) -> str:
    """The distribution a requirement line names, lower case: "psycopg2-binary>=2.9" -> "psycopg2-binary"."""
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def find_interpreter(python_version: str) -> str | None:
    """A ``pythonX.Y`` to compile bytecode for the target runtime: this one if it matches, else one on PATH
    or installed by pyenv (newest patch release first) that really runs."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        return sys.executable
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    installed = glob.glob(f"{pyenv_root}/versions/{python_version}.*/bin/python{python_version}")
    def release(path: str) -> list[int]:
        return [int(part) for part in re.findall(r"\d+", path.split("/versions/")[1].split("/")[0])]

    installed.sort(key=release, reverse=True)
    for candidate in [shutil.which(f"python{python_version}"), *installed]:
        # pyenv puts a shim on PATH for every installed version, which refuses to run one not selected
        if candidate and _runs_as(candidate, python_version):
            return candidate
    return None


def _runs_as(interpreter: str, python_version: str) -> bool:
    try:
        answer = subprocess.run([interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return False
    return answer.stdout.strip() == python_version


def _pip_platform_args(architecture: str) -> list[str]:
    return [argument for tag in PLATFORMS[architecture] for argument in ("--platform", tag)]


def _copy_sources(name: str, staging: Path) -> None:
    ignore = shutil.ignore_patterns(*TOOLING)
    shutil.copytree(PROJECT_ROOT / "shared", staging / "shared", ignore=ignore)
    (staging / "functions").mkdir()
    shutil.copy2(PROJECT_ROOT / "functions" / "__init__.py", staging / "functions" / "__init__.py")
    shutil.copytree(PROJECT_ROOT / "functions" / name, staging / "functions" / name, ignore=ignore)


def _compile(staging: Path, interpreter: str) -> None:
    # unchecked-hash: the bytecode is trusted without looking at the source's mtime, which unzipping changes.
    subprocess.run([interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(staging)], check=True)


def build_bundle(name: str, *, out_dir: Path = DIST, python_version: str | None = None,
                 architecture: str | None = None, find_links: Path | None = None,
                 no_index: bool = False, compile_bytecode: bool = True) -> Bundle:
    """Build ``out_dir/NAME.zip``: the function, ``shared/`` and its dependencies for Lambda's Linux."""
    from devtools.deploy import function_names

    if name not in function_names():
        raise SystemExit(f"No function named {name!r}.")
    deployed_version, deployed_architecture = target(name)
    python_version = python_version or deployed_version
    architecture = architecture or deployed_architecture
    if architecture not in PLATFORMS:
        raise SystemExit(f"architecture must be one of {', '.join(PLATFORMS)}, not {architecture!r}")
    staging = out_dir / "build" / name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _copy_sources(name, staging)
    requirements = bundle_requirements(name)
    if requirements:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-compile", "--target", str(staging), "--implementation", "cp",
                   "--python-version", python_version, *_pip_platform_args(architecture),
                   "--only-binary=:all:", *requirements]
        if find_links:
            command[4:4] = ["--find-links", str(find_links)]
        if no_index:
            command[4:4] = ["--no-index"]
        subprocess.run(command, check=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    for cache in staging.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    compiled = False
    if compile_bytecode:
        interpreter = find_interpreter(python_version)
        if interpreter:
            _compile(staging, interpreter)
            compiled = True
        else:
            print(f"warning: no python{python_version} here to compile {name}'s bytecode for Lambda; the bundle "
                  "works, but each cold start compiles what it imports", file=sys.stderr)

    archive = out_dir / f"{name}.zip"
    archive.unlink(missing_ok=True)
    unzipped = files = 0
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(staging)), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16  # Lambda needs files readable by its user
                info.compress_type = zipfile.ZIP_DEFLATED
                data = path.read_bytes()
                bundle.writestr(info, data, compresslevel=9)
                unzipped += len(data)
                files += 1
    result = Bundle(name, archive, archive.stat().st_size, unzipped, files, architecture, python_version, compiled)
    if result.zipped > LAMBDA_ZIPPED_LIMIT or result.unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise SystemExit(f"{name}: bundle over Lambda's limits ({result.zipped} zipped, {result.unzipped} unzipped)")
    return result


def download_wheels(names: list[str], wheel_dir: Path, python_version: str | None = None,
                    architecture: str | None = None) -> None:
    """Fetch every wheel the bundles need into ``wheel_dir`` (so bundles can later build offline)."""
    deployed_version, deployed_architecture = target()
    requirements = sorted({req for name in names for req in bundle_requirements(name)})
    if not requirements:
        return
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--dest", str(wheel_dir), "--implementation", "cp",
                    "--python-version", python_version or deployed_version,
                    *_pip_platform_args(architecture or deployed_architecture), "--only-binary=:all:",
                    *requirements], check=True)
