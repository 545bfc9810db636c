"""Lambda bundle sizes: `python -m shared bundle --all`, for each function's deployed runtime and architecture
(deploy/deploy.toml), from the pre-downloaded wheels in .cache/wheels when they are there."""

from __future__ import annotations

import tempfile
from pathlib import Path

from devtools import bundle
from devtools.deploy import function_names

ROOT = Path(__file__).resolve().parent.parent


def measure() -> list[bundle.Bundle]:
    built = []
    with tempfile.TemporaryDirectory() as folder:
        for name in function_names():
            version, architecture = bundle.target(name)
            wheels = ROOT / ".cache" / "wheels" / f"{version}-{architecture}"
            built.append(bundle.build_bundle(name, out_dir=Path(folder), find_links=wheels if wheels.is_dir() else None,
                                             no_index=wheels.is_dir()))
    return built


def report(bundles: list[bundle.Bundle]) -> str:
    lines = [
        "## Lambda bundle sizes",
        "",
        "Command: `python -m shared bundle --all` (here via `python -m bench`, section `bench/bundles.py`), for each "
        "function's runtime and architecture in deploy/deploy.toml; boto3 and botocore are left out (the Lambda "
        "runtime has them). Lambda's limits: 50 MB zipped, 250 MB unzipped.",
        "",
        "| function | runtime, architecture | zipped | unzipped | files | bytecode |",
        "|---|---|---|---|---|---|",
    ]
    for built in bundles:
        lines.append(f"| {built.name} | python{built.python_version}, {built.architecture} "
                     f"| {built.zipped / 1e6:.2f} MB | {built.unzipped / 1e6:.2f} MB | {built.files} "
                     f"| {'yes' if built.compiled else 'no'} |")
    return "\n".join(lines) + "\n"
