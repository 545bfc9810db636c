"""What a Lambda bundle carries for the machine it is deployed to: compiled libraries for the right CPU, and
bytecode for the runtime's Python that is used as shipped from a read-only folder.

The compiled libraries are checked by their ELF header (``e_machine``: 62 is x86-64, 183 is AArch64), read here
with ``struct``, for bundles built for both of Lambda's architectures (x86_64 and arm64).
"""

from __future__ import annotations

import re
import struct
import subprocess
import zipfile

import pytest

from tests.platform.aws_lambda import harness
from tests.platform.aws_lambda.harness import HERE, INSPECTED_ELSEWHERE

pytestmark = [pytest.mark.platform, pytest.mark.bundle, pytest.mark.slow]

ELF_MAGIC = b"\x7fELF"
E_MACHINE = {"x86_64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64
TRIPLET = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
EXTENSION_MODULE = re.compile(r"\.cpython-(\d+)-([a-z0-9_]+-linux-gnu)\.so$")
# The compiled heart of each function's dependency: present, or the check above proves nothing.
COMPILED = {"face_tagging": re.compile(r"^PIL/_imaging\.cpython-312-{triplet}\.so$"),
            "asset_sync": re.compile(r"^psycopg2/_psycopg\.cpython-312-{triplet}\.so$")}


def elf_header(archive: zipfile.ZipFile, entry: str) -> tuple[int, int, int] | None:
    """(EI_CLASS, EI_DATA, e_machine) of an ELF file in the archive, or None if it is not ELF."""
    with archive.open(entry) as stream:
        header = stream.read(20)
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack_from(f"{byte_order}H", header, 18)
    return header[4], header[5], machine


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_every_compiled_library_is_built_for_the_bundle_architecture(lambda_bundles, architecture):
    checked = {}
    for (name, built_for), bundle in lambda_bundles.items():
        if built_for != architecture:
            continue
        wrong, libraries = [], []
        with zipfile.ZipFile(bundle.path) as archive:
            for entry in archive.namelist():
                header = elf_header(archive, entry)
                if header is None:
                    assert not SHARED_OBJECT.search(entry), f"{name}: {entry} is named like a library but is not ELF"
                    continue
                libraries.append(entry)
                if header != (2, 1, E_MACHINE[architecture]):  # 64-bit, little-endian, the CPU
                    wrong.append((entry, header))
                module = EXTENSION_MODULE.search(entry)
                if module and module.groups() != ("312", TRIPLET[architecture]):
                    wrong.append((entry, module.groups()))
        assert wrong == [], f"{name} ({architecture}): libraries for another machine or Python: {wrong}"
        if name in COMPILED:
            pattern = re.compile(COMPILED[name].pattern.format(triplet=TRIPLET[architecture]))
            assert any(pattern.match(entry) for entry in libraries), f"{name} ({architecture}): {libraries}"
        checked[name] = len(libraries)
    expected = set(INSPECTED_ELSEWHERE) if architecture != HERE else {name for name, _ in lambda_bundles}
    assert expected <= set(checked), checked
    assert all(checked[name] > 0 for name in COMPILED), checked


def test_every_module_ships_bytecode_for_python_312(lambda_bundles, lambda_py):
    """Lambda's disk is read-only: a module without usable bytecode is compiled again at every cold start."""
    for (name, architecture), bundle in lambda_bundles.items():
        with zipfile.ZipFile(bundle.path) as archive:
            entries = set(archive.namelist())
            sources = sorted(entry for entry in entries if entry.endswith(".py"))
            assert f"functions/{name}/handler.py" in sources and "shared/webhook.py" in sources
            missing, unusable = [], []
            for source in sources:
                folder, _, file = source.rpartition("/")
                compiled = f"{folder}/__pycache__/{file[:-3]}.cpython-312.pyc" if folder else \
                    f"__pycache__/{file[:-3]}.cpython-312.pyc"
                if compiled not in entries:
                    missing.append(source)
                    continue
                with archive.open(compiled) as stream:
                    magic, flags = stream.read(4), struct.unpack("<I", stream.read(4))[0]
                # flags: 0 = checked by the source's mtime and size, which unzipping changes (stale on Lambda);
                # 0b01 = hash-based, unchecked; 0b11 = hash-based, checked against the source (both valid).
                if magic != lambda_py.magic or flags not in (0b01, 0b11):
                    unusable.append((compiled, magic.hex(), flags))
            other_pythons = sorted(entry for entry in entries
                                   if re.search(r"\.cpython-\d+\.pyc$", entry) and ".cpython-312." not in entry)
        assert missing == [], f"{name} ({architecture}): {len(missing)} modules without bytecode, e.g. {missing[:5]}"
        assert unusable == [], f"{name} ({architecture}): bytecode Python 3.12 cannot use as is: {unusable[:5]}"
        assert other_pythons == [], f"{name} ({architecture}): bytecode of another Python: {other_pythons[:5]}"


def test_bytecode_is_used_as_shipped_from_the_read_only_folder(lambda_py, task_roots, unwritable_home):
    """Python 3.12, as the unprivileged user, imports face_tagging and its compiled dependencies from the shipped
    .pyc files: nothing is compiled from source (it could not be written back anyway)."""
    root = task_roots["face_tagging"]
    result = subprocess.run(
        [str(lambda_py.executable), "-v", "-c",
         "import functions.face_tagging.handler, functions.face_tagging.images, PIL.Image, urllib3, cloudinary"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(root), "HOME": str(unwritable_home), "PATH": "/usr/bin:/bin",
             "LD_LIBRARY_PATH": str(lambda_py.lib_dir)}, **harness.unprivileged())
    assert result.returncode == 0, result.stderr[-3000:]
    from_bytecode = re.findall(rf"# code object from '{re.escape(str(root))}/(\S+?)'", result.stderr)
    compiled_here = [line for line in result.stderr.splitlines()
                     if str(root) in line and ("could not create" in line or "wrote " in line)]
    assert "functions/face_tagging/__pycache__/handler.cpython-312.pyc" in from_bytecode
    assert any(path.startswith("PIL/__pycache__/") for path in from_bytecode)
    assert compiled_here == [], compiled_here[:5]
    assert all(path.endswith(".cpython-312.pyc") for path in from_bytecode), from_bytecode[:5]
