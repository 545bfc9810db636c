"""Lambda bundle sizes: `python -m shared bundle --all` for the Lambda runtime (python3.12, Linux wheels)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from devtools import deploy


def measure(python_version: str = "3.12") -> list[deploy.Bundle]:
    with tempfile.TemporaryDirectory() as folder:
        return [deploy.build_bundle(name, out_dir=Path(folder), python_version=python_version)
                for name in deploy.function_names()]


def report(bundles: list[deploy.Bundle], python_version: str = "3.12") -> str:
    lines = [
        "## Lambda bundle sizes",
        "",
        f"Command: `python -m shared bundle --all` (here via `python -m bench`, section `bench/bundles.py`), for "
        f"python{python_version} on {deploy.default_platform()}; boto3 is left out (the Lambda runtime has it).",
        "Lambda's limits: 50 MB zipped, 250 MB unzipped.",
        "",
        "| function | zipped | unzipped | files |",
        "|---|---|---|---|",
    ]
    for bundle in bundles:
        lines.append(f"| {bundle.name} | {bundle.zipped / 1e6:.2f} MB | {bundle.unzipped / 1e6:.2f} MB "
                     f"| {bundle.files} |")
    return "\n".join(lines) + "\n"
