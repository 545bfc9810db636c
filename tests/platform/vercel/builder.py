"""Vercel's own build, run on this repository, offline: where the tools are, and how to drive them.

Standard library only: ``scripts/platform/vercel.sh`` runs this file with Python 3.12 (``prime``: one build with
network access, which fills the uv cache the offline builds then use), and the tests import it.

What a build is here, and why:
- the files: the repository as a Git deployment holds it (tracked files plus new files not ignored);
- the functions and their config: decided by @vercel/fs-detectors' ``detectBuilders`` from those files and
  vercel.json, as for every zero-config deployment;
- the build: @vercel/python's ``build()``, once per function in one shared work directory, with the uv that
  @vercel/python pins on PATH and Python 3.12 findable. It resolves the project's dependencies itself (uv lock,
  uv sync, from whatever manifest it picks), installs vercel-runtime, writes the ``vc__handler__python.py``
  trampoline and returns a Lambda whose files are then laid out as /var/task (``build.cjs``).
  ``build()`` forces uv's cache into ``<workPath>/.vercel/python/cache/uv``; that directory is a symlink to a
  cache kept under .cache/platform, so that ``UV_OFFLINE=1`` builds find what ``prime`` downloaded.
- the work directory: one fixed path, emptied before each run but for ``.vercel/python/.venv`` and the uv cache,
  which is what Vercel's build cache restores into a new deployment's checkout (@vercel/python's
  ``prepareCache``). So a run re-syncs the venv rather than creating it (creating and deleting ~5,000 files costs
  more than the builds on a slow disk). Runs take a lock on it: one run at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CACHE = ROOT / ".cache" / "platform"
NODE_DIR = CACHE / "vercel-node"  # npm ci of package.json + package-lock.json
RUNTIME_VENV = CACHE / "vercel-py312"  # bare Python 3.12: the function's interpreter (deps come from _vendor)
TOOLS = CACHE / "vercel-tools"  # pip --target of uv==UV_VERSION: bin/uv, and bin/python3.12 (a symlink)
UV_CACHE = CACHE / "vercel-uv-cache"
WORK = CACHE / "vercel-work"  # build()'s workPath: a fresh copy of the files each run, with Vercel's build cache
LOCK = CACHE / "vercel-work.lock"
STAMP = CACHE / "vercel.stamp"
BUILD_SCRIPT = HERE / "build.cjs"
SETUP_COMMAND = "bash scripts/platform/vercel.sh"

VERCEL_PYTHON_VERSION = "25.0.0"
UV_VERSION = "0.10.11"  # @vercel/python 25.0.0's UV_VERSION (dist/index.js); test_vercel.py checks it still is
VERCEL_RUNTIME_VERSION = "0.23.2"  # its VERCEL_RUNTIME_VERSION, likewise checked


class ToolsMissing(Exception):
    """The tools are not installed, or were installed for other inputs: run scripts/platform/vercel.sh."""


def fingerprint() -> str:
    """What the installed tools and the primed uv cache depend on. vercel.sh writes it into the stamp; the
    tests refuse to run on a stamp with another value. pyproject.toml counts only through the tables that
    decide the dependencies and the build of the project (not ruff's or pytest's settings)."""
    digest = hashlib.sha256()
    for path in (ROOT / "scripts" / "platform" / "vercel.sh", HERE / "package.json", HERE / "package-lock.json",
                 BUILD_SCRIPT, Path(__file__)):
        digest.update(path.read_bytes())
    pyproject = ROOT / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text("utf-8")) if pyproject.exists() else {}
    relevant = {"project": data.get("project"), "build-system": data.get("build-system"),
                "tool.uv": data.get("tool", {}).get("uv")}
    digest.update(json.dumps(relevant, sort_keys=True).encode())
    for name in ("uv.lock", ".python-version"):  # what else the builder reads (not requirements.txt, see the tests)
        path = ROOT / name
        digest.update(name.encode() + (path.read_bytes() if path.exists() else b"-"))
    return digest.hexdigest()


def check_tools() -> None:
    """Raise ToolsMissing, saying what is wrong, unless vercel.sh installed everything for today's inputs."""
    missing = [str(path.relative_to(ROOT)) for path in
               (NODE_DIR / "node_modules" / "@vercel" / "python" / "dist" / "index.js", RUNTIME_VENV / "bin" / "python",
                TOOLS / "bin" / "uv", TOOLS / "bin" / "python3.12", UV_CACHE, STAMP) if not path.exists()]
    if missing:
        raise ToolsMissing(f"Vercel's tools are not installed (missing: {', '.join(missing)}). "
                           f"Run `{SETUP_COMMAND}` (needs network once; `make test` runs it before pytest).")
    if shutil.which("node") is None:
        raise ToolsMissing(f"node is not on PATH. Run `{SETUP_COMMAND}`.")
    if STAMP.read_text().split()[:1] != [fingerprint()]:
        raise ToolsMissing(f"Vercel's tools and uv cache were set up for other inputs (pyproject.toml's dependencies, "
                           f"the pins in tests/platform/vercel or vercel.sh changed). Run `{SETUP_COMMAND}`.")


def deployment_files() -> list[str]:
    """The repository's files as a Git-connected deployment receives them: tracked, plus new ones not ignored."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    return sorted({name for name in listing.decode("utf-8").split("\0") if name})


# The machine's own network settings, which the priming build (the only one with network access) may need.
NETWORK_SETTINGS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                    "no_proxy", "UV_NATIVE_TLS")


def build_environment(*, offline: bool) -> dict[str, str]:
    """The environment of the builder: what a build image has on PATH (node, uv, python3.12), nothing of ours.

    ``offline``: uv may not touch the network, and anything else that tries meets a dead proxy."""
    node_bin = Path(shutil.which("node") or "/usr/bin/node").parent
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([str(TOOLS / "bin"), str(node_bin), "/usr/local/bin", "/usr/bin",
                                               "/bin"])),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "UV_PYTHON_DOWNLOADS": "never",  # the builder asks for "automatic"; python3.12 is on PATH anyway
        "VERCEL_BUILD_ARCH": "aarch64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64",
        "NO_UPDATE_NOTIFIER": "1",
    }
    if offline:
        dead = "http://127.0.0.1:9"
        env.update(UV_OFFLINE="1", HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, http_proxy=dead,
                   https_proxy=dead, all_proxy=dead)
    else:
        env.update({name: os.environ[name] for name in NETWORK_SETTINGS if name in os.environ})
    return env


@contextlib.contextmanager
def exclusive(timeout: float = 600):
    """Hold the work directory: builds and the functions served from it (they link to its files)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{WORK} stayed locked by another run for {timeout} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fresh_work_dir() -> Path:
    """WORK as a new deployment's checkout finds it: empty, but for the build cache Vercel restores."""
    kept = {".venv", "cache"}
    vercel_python = WORK / ".vercel" / "python"
    if WORK.exists():
        for entry in WORK.iterdir():
            if entry.name != ".vercel":
                remove(entry)
        for entry in (WORK / ".vercel").iterdir():
            if entry.name != "python":
                remove(entry)
        for entry in vercel_python.iterdir() if vercel_python.exists() else ():
            if entry.name not in kept:
                remove(entry)
    vercel_python.mkdir(parents=True, exist_ok=True)
    UV_CACHE.mkdir(parents=True, exist_ok=True)
    link = vercel_python / "cache" / "uv"
    if not link.is_symlink():
        remove(vercel_python / "cache")
        link.parent.mkdir()
        link.symlink_to(UV_CACHE.resolve())
    return WORK


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def run_builds(out_dir: Path, *, offline: bool = True, only: list[str] | None = None,
               timeout: float = 300) -> tuple[dict, str]:
    """Build the functions (all of them, or ``only`` these entrypoints); lay each out in ``out_dir/<name>``.

    Returns (result.json's content, the builder's log). Call it inside ``exclusive()``, and keep holding that
    while the laid-out functions run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    request = {"nodeDir": str(NODE_DIR), "src": str(ROOT), "files": deployment_files(),
               "workPath": str(fresh_work_dir()), "outDir": str(out_dir), "only": only}
    request_path = out_dir / "request.json"
    request_path.write_text(json.dumps(request))
    completed = subprocess.run(["node", str(BUILD_SCRIPT), str(request_path)], cwd=out_dir,
                               env=build_environment(offline=offline), capture_output=True, text=True,
                               timeout=timeout)
    log = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise BuildFailed(log)
    return json.loads((out_dir / "result.json").read_text()), log


class BuildFailed(Exception):
    def __init__(self, log: str) -> None:
        super().__init__(log)
        self.log = log


def new_out_dir() -> Path:
    """A fresh directory for one run's laid-out functions (under .cache/platform, next to what they link to).
    Call it inside ``exclusive()``: other runs' directories are then leftovers, and removed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for leftover in CACHE.glob("vercel-run-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="vercel-run-", dir=CACHE))


def prime() -> None:
    """One real build with network access: fills the uv cache with everything the offline builds need."""
    with exclusive():
        out_dir = new_out_dir()
        try:
            remove(WORK)  # a new venv too: nothing left from other inputs
            first = next(name for name in deployment_files() if name.startswith("api/") and name.endswith(".py"))
            _, log = run_builds(out_dir, offline=False, only=[first], timeout=900)
        except BuildFailed as failure:
            print(failure.log, file=sys.stderr)
            raise SystemExit("vercel.sh: @vercel/python's build failed (its log is above)") from None
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
    print(log.strip())


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "fingerprint":
        print(fingerprint())
    elif command == "prime":
        prime()
    else:
        raise SystemExit("usage: builder.py fingerprint|prime")
