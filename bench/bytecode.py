"""What shipping bytecode in a Lambda bundle saves on a cold start (issue 11).

Lambda's task folder is read-only, so Python cannot write the ``__pycache__`` it compiles on first import:
without bytecode in the zip, every cold start compiles every module it imports again. This builds one
function's bundle twice, for python3.12 (Lambda's runtime) and this machine's architecture, with and without
``unchecked-hash`` bytecode, unpacks each into a read-only folder, and times a fresh ``python3.12 -I -S``
importing the function and the SDK its accepted path uses, as the Lambda runtime would.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from devtools import bundle

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = {"hello_tag": "cloudinary.uploader", "eager_email": "python_http_client",
             "face_tagging": "PIL.Image"}
PROBE = "import sys; sys.path.insert(0, sys.argv[1]); import functions.{name}.handler, {sdk}"


def _architecture() -> str:
    return "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def _read_only_copy(archive: Path, target: Path) -> Path:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(target)
    for folder, _, files in os.walk(target):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
    for folder, _, _ in sorted(os.walk(target), key=lambda entry: -len(entry[0])):
        os.chmod(folder, 0o555)  # noqa: S103 - read-only, as Lambda's task folder
    return target


def _time_import(python: str, folder: Path, name: str, sdk: str) -> float:
    started = time.perf_counter()
    # -B: never write bytecode, as on Lambda's read-only disk (a root user could write it despite the modes)
    subprocess.run([python, "-I", "-S", "-B", "-c", PROBE.format(name=name, sdk=sdk), str(folder)], check=True,
                   env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    return (time.perf_counter() - started) * 1000


def measure(runs: int = 9) -> dict:
    python = bundle.find_interpreter("3.12")
    if python is None:
        return {"error": "no python3.12 on this machine"}
    wheels = ROOT / ".cache" / "wheels" / f"3.12-{_architecture()}"
    results: dict = {"python": python, "functions": {}}
    work = Path(tempfile.mkdtemp(prefix="bench-bytecode-"))
    try:
        for name, sdk in FUNCTIONS.items():
            folders = {}
            for compiled in (True, False):
                out = work / f"{name}-{'pyc' if compiled else 'source'}"
                built = bundle.build_bundle(name, out_dir=out, python_version="3.12", architecture=_architecture(),
                                            find_links=wheels if wheels.is_dir() else None,
                                            no_index=wheels.is_dir(), compile_bytecode=compiled)
                folders[compiled] = _read_only_copy(built.path, out / "task")
            _time_import(python, folders[True], name, sdk)  # warm the OS file cache for both
            _time_import(python, folders[False], name, sdk)
            with_pyc, without = [], []
            for _ in range(runs):  # interleaved: the machine's noise hits both alike
                with_pyc.append(_time_import(python, folders[True], name, sdk))
                without.append(_time_import(python, folders[False], name, sdk))
            results["functions"][name] = {"sdk": sdk, "pyc": statistics.median(with_pyc),
                                          "source": statistics.median(without)}
    finally:
        for folder, _, _ in os.walk(work):
            os.chmod(folder, 0o755)  # noqa: S103 - writable again, to remove it
        shutil.rmtree(work, ignore_errors=True)
    results["runs"] = runs
    return results


def report(results: dict) -> str:
    lines = ["## Lambda bundles: bytecode", ""]
    if "error" in results:
        return "\n".join([*lines, f"Not measured: {results['error']}.", ""])
    lines += [
        "Command: `python -m bench` (section `bench/bytecode.py`). Each function's bundle built twice for python3.12",
        "(with and without the `unchecked-hash` bytecode `python -m shared bundle` ships), unpacked into a read-only",
        "folder as Lambda's `/var/task` is, and a fresh `python3.12 -I -S -B` importing the function and the SDK its",
        f"accepted path uses; median of {results['runs']} interleaved runs each.",
        "",
        "| function (and SDK) | with bytecode | source only (compiled at every cold start) | saved |",
        "|---|---|---|---|",
    ]
    for name, figures in results["functions"].items():
        saved = figures["source"] - figures["pyc"]
        lines.append(f"| {name} (`{figures['sdk']}`) | {figures['pyc']:.0f} ms | {figures['source']:.0f} ms "
                     f"| {saved:.0f} ms ({saved / figures['source']:.0%}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure()))
