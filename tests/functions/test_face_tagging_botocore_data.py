"""face_tagging's trimmed botocore data (functions/face_tagging/botocore_data): botocore's own, cut to what the
function uses, and what its Rekognition client is built from.

The data saves ~10 MiB of a cold start (bench/accepted.py); these tests make sure it changes nothing else: the
kept operations and shapes (documentation aside) and endpoint data are exactly the installed botocore's, a new
botocore that changes any of them fails here (regenerate with ``python -m functions.face_tagging
trim-botocore-data``), the handler calls no operation the trimmed model lacks, and clients resolve the same
endpoints as with botocore's data.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.loaders import Loader

from devtools import bundle as bundles_module
from functions.face_tagging import __main__ as trimming
from functions.face_tagging import rekognition

DATA = Path(rekognition.DATA_PATH)


@pytest.fixture(autouse=True)
def no_aws_settings(monkeypatch, tmp_path):
    """Endpoints and models from botocore alone: no config file, no endpoint or data path set outside."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_REKOGNITION", "AWS_ENDPOINT_URL_STS", "AWS_DATA_PATH",
                 "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")


def shipped() -> dict[str, str]:
    return {str(path.relative_to(DATA)): path.read_text(encoding="utf-8") for path in sorted(DATA.rglob("*.json"))}


def test_the_shipped_data_is_what_the_installed_botocore_gives():
    assert shipped() == trimming.files(), (
        "botocore's data changed: run `python -m functions.face_tagging trim-botocore-data` and commit the result")


def test_every_kept_operation_and_shape_is_botocore_s_own():
    builtin = trimming.builtin_loader()
    version = builtin.determine_latest_version("rekognition", "service-2")
    full = builtin.load_data(f"rekognition/{version}/service-2")
    trimmed = json.loads((DATA / "rekognition" / version / "service-2.json").read_text(encoding="utf-8"))

    assert {key: value for key, value in trimmed.items() if key not in ("operations", "shapes")} \
        == {key: value for key, value in full.items() if key not in ("operations", "shapes", "documentation")}
    assert sorted(trimmed["operations"]) == sorted(rekognition.OPERATIONS)
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


def test_the_endpoint_data_is_botocore_s_own_for_the_services_kept():
    full = trimming.builtin_loader().load_data("endpoints")
    trimmed = json.loads((DATA / "endpoints.json").read_text(encoding="utf-8"))

    assert {key: value for key, value in trimmed.items() if key != "partitions"} \
        == {key: value for key, value in full.items() if key != "partitions"}
    assert len(trimmed["partitions"]) == len(full["partitions"])
    for ours, theirs in zip(trimmed["partitions"], full["partitions"], strict=True):
        assert {k: v for k, v in ours.items() if k != "services"} \
            == {k: v for k, v in theirs.items() if k != "services"}
        assert ours["services"] == {name: data for name, data in theirs["services"].items()
                                    if name in rekognition.ENDPOINT_SERVICES}
    assert "rekognition" in trimmed["partitions"][0]["services"]


def test_the_function_calls_only_operations_the_trimmed_model_holds():
    """Every ``client().<method>(`` in rekognition.py is one of OPERATIONS: a call the model lacked would be an
    AttributeError on the accepted path."""
    tree = ast.parse(Path(rekognition.__file__).read_text(encoding="utf-8"))
    called = {node.func.attr for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, "id", None) == "client"}
    assert called == {xform_name(name) for name in rekognition.OPERATIONS}


def test_the_client_is_built_from_the_trimmed_data():
    client = rekognition._create("eu-west-1", None, 4.0, 2)

    assert sorted(client.meta.service_model.operation_names) == sorted(rekognition.OPERATIONS)
    loader = client._loader
    _, path = loader.load_data_with_path("endpoints")
    assert path.startswith(str(DATA)) and loader.is_builtin_path(path)
    assert not loader.is_builtin_path(str(DATA.parent / "handler.py"))


@pytest.mark.parametrize(("region", "options"), [
    ("us-east-1", {}), ("eu-west-1", {}), ("ap-southeast-2", {}), ("us-gov-west-1", {}), ("cn-north-1", {}),
    ("us-east-1", {"use_fips_endpoint": True}), ("us-east-1", {"use_dualstack_endpoint": True}),
    ("ca-central-1", {"use_fips_endpoint": True}),
])
def test_endpoints_resolve_as_with_botocore_s_own_data(region, options):
    trimmed = rekognition._create(region, None, 4.0, 2)
    stock = botocore.session.Session().create_client("rekognition", region_name=region, config=Config(**options))
    if options:  # rekognition._create takes no such options: the same client, with them
        session = botocore.session.Session()
        session.register_component("data_loader", type(trimmed._loader)())
        trimmed = session.create_client("rekognition", region_name=region, config=Config(**options))

    assert trimmed.meta.endpoint_url == stock.meta.endpoint_url
    assert trimmed.meta.partition == stock.meta.partition
    request = {"CollectionId": "faces", "Image": {"Bytes": b"x"}, "FaceMatchThreshold": 80.0, "MaxFaces": 5}
    ours = trimmed._resolve_endpoint_ruleset(trimmed.meta.service_model.operation_model("SearchFacesByImage"),
                                             request, {})
    theirs = stock._resolve_endpoint_ruleset(stock.meta.service_model.operation_model("SearchFacesByImage"),
                                             request, {})
    assert ours == theirs


def test_the_session_can_still_create_the_clients_credential_providers_use():
    """A role to assume or an SSO profile makes botocore create an STS or SSO client from the same session (and
    so the same loader): those services must stay known, with their own data."""
    trimmed = rekognition._create("eu-west-1", None, 4.0, 2)
    loader = trimmed._loader
    assert {"rekognition", "sts", "sso", "s3"} <= set(loader.list_available_services("service-2"))
    session = botocore.session.Session()
    session.register_component("data_loader", type(loader)())
    for service in ("sts", "sso"):
        client = session.create_client(service, region_name="eu-west-1")
        stock = botocore.session.Session().create_client(service, region_name="eu-west-1")
        assert client.meta.endpoint_url == stock.meta.endpoint_url
        assert client.meta.service_model.operation_names == stock.meta.service_model.operation_names


def test_without_the_data_botocore_s_own_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(rekognition, "DATA_PATH", str(tmp_path / "absent"))
    client = rekognition._create("eu-west-1", None, 4.0, 2)
    assert len(client.meta.service_model.operation_names) > len(rekognition.OPERATIONS)


def test_the_lambda_bundle_carries_the_data(tmp_path):
    bundles_module._copy_sources("face_tagging", tmp_path)
    copied = tmp_path / "functions" / "face_tagging" / "botocore_data"
    assert {str(path.relative_to(copied)) for path in copied.rglob("*.json")} == set(shipped())
    assert not (tmp_path / "functions" / "face_tagging" / "__main__.py").exists()  # the generator is tooling


def test_check_command_says_whether_the_data_matches(capsys):
    assert trimming.main(["trim-botocore-data", "--check"]) == 0
    assert "matches the installed botocore" in capsys.readouterr().out


def test_a_changed_botocore_is_noticed(monkeypatch):
    """What a new botocore whose Rekognition model changed looks like to the check: a difference."""
    original = Loader.load_data

    def changed(self, name):
        data = original(self, name)
        if name.endswith("service-2") and name.startswith("rekognition/"):
            data = dict(data, shapes=dict(data["shapes"], Image=dict(data["shapes"]["Image"], changed=True)))
        return data

    monkeypatch.setattr(Loader, "load_data", changed)
    assert trimming.main(["trim-botocore-data", "--check"]) == 1
