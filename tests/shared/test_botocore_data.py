"""The trimmed botocore data the project ships (devtools/botocore_data.py): botocore's own, cut to what one client
uses, and what that client is built from. face_tagging's Rekognition client (functions/face_tagging/botocore_data)
and the DynamoDB idempotency store's client (shared/botocore_data).

The data saves most of a client's creation (time and memory: bench/accepted.py); these tests make sure it
changes nothing else: the kept operations and shapes (documentation aside) and endpoint data are exactly the
installed botocore's, a new botocore that changes any of them fails here (regenerate with ``python -m
devtools.botocore_data``), the code calls no operation a trimmed model lacks, and clients resolve the same
endpoints as with botocore's own data.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.loaders import Loader

from devtools import botocore_data
from devtools import bundle as bundles_module
from functions.face_tagging import __main__ as face_tagging_command
from functions.face_tagging import rekognition
from shared import idempotency
from tests.helpers import ROOT

TRIMMINGS = botocore_data.trimmings()


class Case:
    """What a test needs of one trimming besides its folder: how the code creates its client, where the code
    calls it, a request to resolve an endpoint for, and a function whose Lambda bundle carries the data."""

    def __init__(self, name, create, source, data_variable, operation, request, bundled_by):
        self.trimming = TRIMMINGS[name]
        self.create = create  # region -> the client, exactly as the code creates it
        self.source = Path(source)
        self.data_variable = data_variable  # (module, name of its constant holding the folder)
        self.operation = operation
        self.request = request
        self.bundled_by = bundled_by


CASES = {
    "face_tagging": Case(
        "face_tagging", lambda region: rekognition._create(region, None, 4.0, 2), rekognition.__file__,
        (rekognition, "DATA_PATH"), "SearchFacesByImage",
        {"CollectionId": "faces", "Image": {"Bytes": b"x"}, "FaceMatchThreshold": 80.0, "MaxFaces": 5},
        "face_tagging"),
    "idempotency": Case(
        "idempotency", lambda region: idempotency._DynamoStore("webhooks-idempotency", region, None, 3.0, 2)._create(),
        idempotency.__file__, (idempotency, "DYNAMODB_DATA_PATH"), "PutItem",
        {"TableName": "webhooks-idempotency", "Item": {"key": {"S": "k"}}}, "eager_email"),
}


@pytest.fixture(params=sorted(CASES))
def case(request) -> Case:
    return CASES[request.param]


@pytest.fixture(autouse=True)
def no_aws_settings(monkeypatch, tmp_path):
    """Endpoints and models from botocore alone: no config file, no endpoint or data path set outside."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_REKOGNITION", "AWS_ENDPOINT_URL_DYNAMODB",
                 "AWS_ENDPOINT_URL_STS", "AWS_DATA_PATH", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
                 "AWS_PROFILE", "AWS_ACCOUNT_ID", "AWS_ACCOUNT_ID_ENDPOINT_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")


def test_every_client_built_from_trimmed_data_has_its_case():
    assert set(CASES) == set(TRIMMINGS)


def test_the_shipped_data_is_what_the_installed_botocore_gives(case):
    assert botocore_data.shipped(case.trimming) == botocore_data.files(case.trimming), (
        "botocore's data changed: run `python -m devtools.botocore_data` and commit the result")


def test_every_kept_operation_and_shape_is_botocore_s_own(case):
    service = case.trimming.service
    builtin = botocore_data.builtin_loader()
    version = builtin.determine_latest_version(service, "service-2")
    full = builtin.load_data(f"{service}/{version}/service-2")
    trimmed = json.loads((case.trimming.folder / service / version / "service-2.json").read_text(encoding="utf-8"))

    assert {key: value for key, value in trimmed.items() if key not in ("operations", "shapes")} \
        == {key: value for key, value in full.items() if key not in ("operations", "shapes", "documentation")}
    assert sorted(trimmed["operations"]) == sorted(case.trimming.operations)
    for name, operation in trimmed["operations"].items():
        assert operation == without_documentation(full["operations"][name]), name
    for name, shape in trimmed["shapes"].items():
        assert shape == without_documentation(full["shapes"][name]), name
    # Every shape a kept operation reaches is there (the trimming computed it; check it another way: every
    # reference in the trimmed model resolves in it).
    refs = [ref for shape in trimmed["shapes"].values()
            for ref in [*shape.get("members", {}).values(), *(shape[k] for k in ("member", "key", "value")
                                                                if k in shape)]]
    refs += [operation[key] for operation in trimmed["operations"].values() for key in ("input", "output")
             if key in operation]
    refs += [error for operation in trimmed["operations"].values() for error in operation.get("errors", [])]
    assert {ref["shape"] for ref in refs} <= set(trimmed["shapes"])


def without_documentation(part: dict) -> dict:
    """Written apart from the generator's: the documentation keys of a part and of the references it holds."""
    refs = {"members": {name: without_documentation(ref) for name, ref in part.get("members", {}).items()}}
    refs.update({key: without_documentation(part[key]) for key in ("member", "key", "value") if key in part})
    return {key: refs.get(key, value) for key, value in part.items() if key != "documentation"}


def test_the_endpoint_data_is_botocore_s_own_for_the_services_kept(case):
    builtin = botocore_data.builtin_loader()
    full = builtin.load_data("endpoints")
    trimmed = json.loads((case.trimming.folder / "endpoints.json").read_text(encoding="utf-8"))
    # endpoints.json names a service by its model's endpoint prefix (SSO's is portal.sso), found here from the
    # clients botocore builds: every one of them must be there, in the first partition at least.
    kept = {botocore.session.Session().create_client(service, region_name="us-east-1")
            .meta.service_model.endpoint_prefix for service in case.trimming.endpoint_services}
    assert kept <= set(full["partitions"][0]["services"])
    assert "portal.sso" in kept and "oidc" in kept

    assert {key: value for key, value in trimmed.items() if key != "partitions"} \
        == {key: value for key, value in full.items() if key != "partitions"}
    assert len(trimmed["partitions"]) == len(full["partitions"])
    for ours, theirs in zip(trimmed["partitions"], full["partitions"], strict=True):
        assert {k: v for k, v in ours.items() if k != "services"} \
            == {k: v for k, v in theirs.items() if k != "services"}
        assert ours["services"] == {name: data for name, data in theirs["services"].items() if name in kept}
    assert case.trimming.service in trimmed["partitions"][0]["services"]


def test_the_code_calls_only_operations_the_trimmed_model_holds(case):
    """Every ``client().<method>(`` (or ``self.client().<method>(``) in the code is a kept operation: one the
    model lacked would be an AttributeError on the path that calls it."""
    tree = ast.parse(case.source.read_text(encoding="utf-8"))
    called = {node.func.attr for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Call) and _names_client(node.func.value.func)}
    kept = {xform_name(name) for name in case.trimming.operations}
    assert called and called <= kept
    # What is kept and never called: only what botocore itself may call (DynamoDB's endpoint discovery).
    assert kept - called <= {"describe_endpoints"}


def _names_client(function: ast.expr) -> bool:
    return getattr(function, "id", None) == "client" or getattr(function, "attr", None) == "client"


def test_the_client_is_built_from_the_trimmed_data(case):
    client = case.create("eu-west-1")

    assert sorted(client.meta.service_model.operation_names) == sorted(case.trimming.operations)
    loader = client._loader
    _, path = loader.load_data_with_path("endpoints")
    assert path.startswith(str(case.trimming.folder)) and loader.is_builtin_path(path)
    assert not loader.is_builtin_path(str(case.trimming.folder.parent / "__init__.py"))


@pytest.mark.parametrize(("region", "options"), [
    ("us-east-1", {}), ("eu-west-1", {}), ("ap-southeast-2", {}), ("us-gov-west-1", {}), ("cn-north-1", {}),
    ("us-east-1", {"use_fips_endpoint": True}), ("us-east-1", {"use_dualstack_endpoint": True}),
    ("ca-central-1", {"use_fips_endpoint": True}),
])
def test_endpoints_resolve_as_with_botocore_s_own_data(case, region, options):
    trimmed = case.create(region)
    service = case.trimming.service
    stock = botocore.session.Session().create_client(service, region_name=region, config=Config(**options))
    if options:  # the code takes no such options: the same client, with them
        session = botocore.session.Session()
        session.register_component("data_loader", type(trimmed._loader)())
        trimmed = session.create_client(service, region_name=region, config=Config(**options))

    assert trimmed.meta.endpoint_url == stock.meta.endpoint_url
    assert trimmed.meta.partition == stock.meta.partition
    ours = trimmed._resolve_endpoint_ruleset(trimmed.meta.service_model.operation_model(case.operation),
                                             case.request, {})
    theirs = stock._resolve_endpoint_ruleset(stock.meta.service_model.operation_model(case.operation),
                                             case.request, {})
    assert ours == theirs


def test_account_id_endpoints_resolve_as_with_botocore_s_own_data(case, monkeypatch):
    """Credentials that carry an account ID (here from the environment) give DynamoDB account-based endpoints:
    the rule set comes from botocore either way, the same answer with the trimmed data."""
    monkeypatch.setenv("AWS_ACCOUNT_ID", "123456789012")
    trimmed = case.create("us-east-1")
    stock = botocore.session.Session().create_client(case.trimming.service, region_name="us-east-1")
    ours = trimmed._resolve_endpoint_ruleset(trimmed.meta.service_model.operation_model(case.operation),
                                             case.request, {})
    theirs = stock._resolve_endpoint_ruleset(stock.meta.service_model.operation_model(case.operation),
                                             case.request, {})
    assert ours == theirs
    if case.trimming.service == "dynamodb":
        assert "123456789012" in ours[0]  # the account's own endpoint, not the regional one


def test_the_session_can_still_create_the_clients_credential_providers_use(case):
    """A role to assume or an SSO profile makes botocore create an STS or SSO client from the same session (and
    so the same loader): those services must stay known, with their own data."""
    loader = case.create("eu-west-1")._loader
    assert {case.trimming.service, "sts", "sso", "s3"} <= set(loader.list_available_services("service-2"))
    session = botocore.session.Session()
    session.register_component("data_loader", type(loader)())
    for service in ("sts", "sso"):
        client = session.create_client(service, region_name="eu-west-1")
        stock = botocore.session.Session().create_client(service, region_name="eu-west-1")
        assert client.meta.endpoint_url == stock.meta.endpoint_url
        assert client.meta.service_model.operation_names == stock.meta.service_model.operation_names


def test_models_in_aws_data_path_come_first_as_with_boto3(case, monkeypatch, tmp_path):
    """A user's own models (AWS_DATA_PATH, or data_path in ~/.aws/config) are searched before the trimmed data,
    as boto3's loader searches them before botocore's own: here a model of the service holding one operation."""
    version = botocore_data.builtin_loader().determine_latest_version(case.trimming.service, "service-2")
    model = json.loads((case.trimming.folder / case.trimming.service / version / "service-2.json").read_text())
    model["operations"] = {case.operation: model["operations"][case.operation]}
    custom = tmp_path / "models"
    (custom / case.trimming.service / version).mkdir(parents=True)
    (custom / case.trimming.service / version / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", f"{tmp_path / 'absent'}:{custom}")

    client = case.create("eu-west-1")
    assert client.meta.service_model.operation_names == [case.operation]
    assert client._loader.search_paths[:3] == [str(tmp_path / "absent"), str(custom), str(case.trimming.folder)]


def test_without_the_data_botocore_s_own_is_used(case, monkeypatch, tmp_path):
    module, variable = case.data_variable
    monkeypatch.setattr(module, variable, str(tmp_path / "absent"))
    client = case.create("eu-west-1")
    assert len(client.meta.service_model.operation_names) > len(case.trimming.operations)


def test_the_lambda_bundle_carries_the_data(case, tmp_path):
    bundles_module._copy_sources(case.bundled_by, tmp_path)
    copied = tmp_path / case.trimming.folder.relative_to(ROOT)
    assert {str(path.relative_to(copied)) for path in copied.rglob("*.json")} == set(
        botocore_data.shipped(case.trimming))
    assert not (tmp_path / "functions" / case.bundled_by / "__main__.py").exists()  # generators are tooling


def test_an_installed_package_carries_the_data(tmp_path):
    """pip's non-editable install builds the packages with setuptools' build_py, which copies only the data
    files pyproject.toml lists: a folder missing there would leave installs on botocore's whole data."""
    for name in ("pyproject.toml", "README.md", "shared", "functions", "devtools"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tmp_path / name)
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib",
                    "built"], cwd=tmp_path, check=True, capture_output=True)
    for trimming in TRIMMINGS.values():
        built = tmp_path / "built" / trimming.folder.relative_to(ROOT)
        assert {str(path.relative_to(built)) for path in built.rglob("*.json")} == set(
            botocore_data.shipped(trimming)), trimming.name


def test_check_command_says_whether_the_data_matches(capsys):
    assert botocore_data.main(["--check"]) == 0
    out = capsys.readouterr().out
    assert all(f"{trimming.folder} matches the installed botocore" in out for trimming in TRIMMINGS.values())


def test_face_tagging_s_own_command_checks_its_folder_only(capsys):
    assert face_tagging_command.main(["trim-botocore-data", "--check"]) == 0
    assert capsys.readouterr().out == f"{rekognition.DATA_PATH} matches the installed botocore\n"


def test_a_changed_botocore_is_noticed(case, monkeypatch, capsys):
    """What a new botocore whose model of the service changed looks like to the check: a difference, for that
    folder alone."""
    original = Loader.load_data
    service = case.trimming.service

    def changed(self, name):
        data = original(self, name)
        if name.endswith("service-2") and name.startswith(f"{service}/"):
            data = dict(data, metadata=dict(data["metadata"], changed=True))
        return data

    monkeypatch.setattr(Loader, "load_data", changed)
    assert botocore_data.main(["--check"]) == 1
    captured = capsys.readouterr()
    assert f"{case.trimming.folder} differs from the installed botocore" in captured.err
    assert all(f"{other.folder} matches" in captured.out for other in TRIMMINGS.values() if other is not case.trimming)


def test_the_tests_botocore_is_the_lambda_stand_in_s():
    """requirements-dev.txt pins the botocore the data is checked against; scripts/platform/lambda.sh installs the
    SDK the platform tests run the bundles with. One version: the data is checked against what those tests run."""
    pins = dict(re.findall(r"^(boto3|botocore)==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M))
    stand_in = re.search(r"^BOTO3_VERSION=(\S+)", (ROOT / "scripts" / "platform" / "lambda.sh").read_text(), re.M)
    assert pins == {"boto3": stand_in.group(1), "botocore": stand_in.group(1)}
    assert botocore.__version__ == pins["botocore"]
