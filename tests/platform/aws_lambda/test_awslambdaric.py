"""Every function's Lambda bundle, run by AWS's own runtime interface client.

Per function: its bundle unzipped read-only, ``python3.12 -m awslambdaric <Handler>`` as an unprivileged user
with the environment template.yaml gives it, polling a local Runtime API stand-in (runtime_api.py). One
process per function answers, in sequence, each signed sample as a Function URL event (payload 2.0, body
plain and base64), a forged one and a GET. Cloudinary, Rekognition and the CDN are local stand-ins; nothing
leaves the machine. What is asserted is what the function POSTed back to the Runtime API, what it logged
(Lambda's log stream) and what it did to the stand-ins.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared import idempotency, verify
from tests import pg
from tests.fakes.cloudinary import FakeCloudinary
from tests.fakes.dynamodb import FakeDynamoDB
from tests.fakes.rekognition import FakeRekognition
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import API_KEY, CLOUD_NAME, ROOT, SECRET
from tests.platform.aws_lambda import harness
from tests.platform.aws_lambda.cdn import LocalCDN, self_signed_certificate

pytestmark = [pytest.mark.platform, pytest.mark.bundle, pytest.mark.slow]

# template.yaml's parameters as `sam deploy --guided` would be answered; DryRun is set per test.
PARAMETERS = {"FromVerifiedSender": "cloudinary@example.com", "ToRecipients": "team@example.com, ops@example.com",
              "RekognitionCollectionId": "staff-faces"}
SENDGRID_KEY = "SG.platform-test-key"
JOSE = "José García Núñez"
# A face learnt from another training image than training_upload.json's (names.py's encoding of the name)
JOSE_FACE = "0123456789abcdef0123456789abcdef:Jos_C3_A9_20Garc_C3_ADa_20N_C3_BA_C3_B1ez"

# The body["status"] of the 200 each signed sample must be answered, through the platform.
# DRY_RUN=1 for all but hello_tag, which tags for real on the Cloudinary stand-in.
EXPECTED = {
    "hello_tag": {"upload": "done", "already_tagged": "ignored", "tags_changed": "ignored"},
    "eager_email": {"eager": "dry_run", "eager_partly_failed": "dry_run", "eager_video": "dry_run",
                    "upload": "ignored"},
    "bg_removal_approval": {"info_complete": "ignored", "info_failed": "dry_run", "moderation_approved": "dry_run",
                            "moderation_rejected": "dry_run", "upload": "ignored"},
    "video_moderation": {"moderation_approved": "dry_run", "moderation_pending": "ignored",
                         "moderation_rejected": "dry_run", "upload_approved": "dry_run", "upload_pending": "ignored",
                         "upload_rejected": "dry_run"},
    # delete_training and training_label_added need the Admin API's resources/by_asset_ids, which the
    # Cloudinary stand-in does not implement: covered by tests/functions/test_face_tagging.py.
    "face_tagging": {"upload": "dry_run", "training_upload": "dry_run", "video_upload": "ignored",
                     "own_tags_changed": "ignored"},
    "chat_alerts": {"upload": "dry_run", "upload_legacy": "dry_run", "delete": "dry_run",
                    "moderation_rejected": "dry_run", "rename": "ignored"},
    # The samples dated long before now are late deliveries, whose stamps metadata_stamp reads first (Admin API
    # resources by asset ID, which the stand-in does not implement): covered by tests/functions.
    "metadata_stamp": {"delete": "ignored", "upload_already_stamped": "ignored",
                       "resource_tags_changed_no_context": "dry_run"},
    "video_preprocess": {"upload": "dry_run", "upload_small": "dry_run", "upload_image": "ignored",
                         "upload_with_eager": "ignored"},
}


def samples(name: str) -> dict[str, bytes]:
    folder = ROOT / "functions" / name / "samples"
    return {path.stem: path.read_bytes() for path in sorted(folder.glob("*.json"))}


def signed_event(body: bytes, *, base64_body: bool = False, secret: str = SECRET) -> dict[str, Any]:
    return harness.function_url_event(body, verify.signed_headers(body, secret), base64_body=base64_body)


# --- stand-ins ---------------------------------------------------------------------------------------------

@pytest.fixture
def cloudinary() -> Iterator[FakeCloudinary]:
    fake = FakeCloudinary(CLOUD_NAME)
    fake.prefix = fake.start()
    yield fake
    fake.stop()


def cloudinary_url(fake: FakeCloudinary, **extra: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"upload_prefix": fake.prefix, **extra}.items())
    return f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?{query}"


def add_assets(name: str, fake: FakeCloudinary) -> None:
    """The assets the samples name, in the state that makes each sample do its work (in a dry run)."""
    if name == "hello_tag":
        fake.add_asset("samples/hello/xsahlpu1dte4xjwvcf5k", tags=["sample"])
    elif name == "bg_removal_approval":
        fake.add_asset("products/yellow-shoes", type="authenticated",
                       moderation=[{"kind": "manual", "status": "approved"}])
        fake.add_asset("products/blurry-lamp", type="authenticated")
        fake.add_asset("products/red-chair", type="authenticated",
                       moderation=[{"kind": "manual", "status": "rejected"}])
    elif name == "video_moderation":
        statuses = {"ugc/tok627Lzicdh7ddzcect": "approved", "ugc/bz1ql0kqzjhfmwd4vqkr": "rejected",
                    "ugc/skate_park_approved": "approved", "ugc/skate_park_rejected": "rejected"}
        asset_ids = {payload["public_id"]: payload["asset_id"]
                     for payload in map(json.loads, samples(name).values())}
        for public_id, status in statuses.items():
            fake.add_asset(public_id, resource_type="video", asset_id=asset_ids[public_id],
                           moderation=[{"kind": "google_video_moderation", "status": status}],
                           access_control=[{"access_type": "token"}])  # uploaded private until approved


def face_photo() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (400, 300), (128, 128, 128))
    ImageDraw.Draw(image).rectangle([40, 60, 119, 149], fill=(220, 30, 30))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def rekognition() -> Iterator[FakeRekognition]:
    # Any crop is José's face: the stand-in's SearchFacesByImage matches faces by this key.
    fake = FakeRekognition(identify=lambda image: "jose")
    fake.url = fake.start()
    fake.collections["staff-faces"] = []
    fake.add_face("staff-faces", JOSE_FACE, key="jose")
    fake.detected = [{"Left": 0.1, "Top": 0.2, "Width": 0.2, "Height": 0.3}]
    yield fake
    fake.stop()


@pytest.fixture
def cdn() -> Iterator[tuple[LocalCDN, Path]]:
    base = harness.scratch_dir("lambda-cdn-")
    certificate, key = self_signed_certificate(base)
    server = LocalCDN(certificate, key, face_photo())
    yield server, certificate
    server.stop()
    harness.remove_tree(base)


# --- the runtime -------------------------------------------------------------------------------------------

@pytest.fixture
def start_runtime(lambda_py, task_roots, unwritable_home) -> Iterator[Any]:
    started: list[harness.LambdaRuntime] = []

    def start(name: str, *, secrets: dict[str, str], parameters: dict[str, str],
              extra_env: dict[str, str] | None = None) -> harness.LambdaRuntime:
        spec = harness.function_spec(name, secrets, {**PARAMETERS, **parameters})
        runtime = harness.LambdaRuntime(lambda_py, task_roots[name], spec, unwritable_home, extra_env)
        started.append(runtime)
        assert runtime.user_id() != 0  # Lambda never runs a function as root
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


def answer(runtime: harness.LambdaRuntime, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str],
                                                                         str]:
    invocation = runtime.invoke(event)
    status, body, headers = harness.http_response(invocation)
    return status, body, headers, invocation.request_id


def check_logs(runtime: harness.LambdaRuntime, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Lambda's log stream: exactly one line per request, tagged with its request id; no secret anywhere.
    Returns each request's line (the function's JSON), by request id."""
    lines: dict[str, list[dict[str, Any]]] = {request_id: [] for request_id in request_ids}
    for request_id, message in runtime.log_records():
        try:
            line = json.loads(message)
        except ValueError:
            continue
        if request_id in lines and isinstance(line, dict) and line.get("function") == runtime.spec.name:
            lines[request_id].append(line)
    output = runtime.output()
    assert {request_id: len(found) for request_id, found in lines.items()} == dict.fromkeys(request_ids, 1), \
        output[-3000:]
    for secret in (SECRET, SENDGRID_KEY, "platform-test-secret-access-key"):
        assert secret not in output
    assert "Traceback" not in output, output[-3000:]
    assert runtime.api.protocol_errors == [] and runtime.api.init_errors == []
    return {request_id: found[0] for request_id, found in lines.items()}


def common_requests(runtime: harness.LambdaRuntime, body: bytes) -> list[str]:
    """A forged notification (401) and a GET (405), both as a Function URL delivers them."""
    forged_status, forged, _, forged_id = answer(runtime, signed_event(body, secret="not-the-api-secret"))
    assert (forged_status, forged["error"]) == (401, "signature_mismatch")
    get_status, _, get_headers, get_id = answer(runtime, harness.function_url_event(b"", {}, method="GET"))
    assert get_status == 405
    assert {key.lower(): value for key, value in get_headers.items()}.get("allow") == "POST"
    return [forged_id, get_id]


# --- the tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_function_answers_each_sample_through_awslambdaric(name, request, start_runtime, cloudinary):
    add_assets(name, cloudinary)
    real = name == "hello_tag"  # the one function that acts for real here (on the stand-in)
    url, extra_env = cloudinary_url(cloudinary), {}
    if name == "face_tagging":  # the image comes from the CDN over HTTPS; faces from Rekognition
        rekognition = request.getfixturevalue("rekognition")
        cdn_server, certificate = request.getfixturevalue("cdn")
        url = cloudinary_url(cloudinary, secure_distribution=cdn_server.host)
        extra_env = {"AWS_ENDPOINT_URL_REKOGNITION": rekognition.url, "SSL_CERT_FILE": str(certificate),
                     "AWS_MAX_ATTEMPTS": "1"}
    if name == "chat_alerts":  # a real Slack address: the dry run posts nothing, and nothing could leave anyway
        extra_env = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXX"}
    runtime = start_runtime(name, secrets={"CLOUDINARY_URL": url, "SENDGRID_API_KEY": SENDGRID_KEY},
                            parameters={"DryRun": "0" if real else "1", "IdempotencyTable": "webhooks-idempotency"},
                            extra_env=extra_env)

    request_ids = []
    outcomes = {}
    bodies = samples(name)
    for index, sample in enumerate(EXPECTED[name]):  # every other one base64-encoded, as Lambda may pass it
        status, reply, _, request_id = answer(runtime, signed_event(bodies[sample], base64_body=index % 2 == 1))
        request_ids.append(request_id)
        outcomes[sample] = (status, reply.get("status"), reply)
    assert {sample: outcome[:2] for sample, outcome in outcomes.items()} == {
        sample: (200, status) for sample, status in EXPECTED[name].items()}, outcomes
    request_ids += common_requests(runtime, next(iter(samples(name).values())))
    check_logs(runtime, request_ids)

    if real:
        assert "Hello World!" in cloudinary.asset("samples/hello/xsahlpu1dte4xjwvcf5k")["tags"]
        assert [call.action for call in cloudinary.writes] == ["tags"]
    else:
        assert cloudinary.writes == []  # a dry run writes nothing
    if name == "face_tagging":
        assert {call.operation for call in rekognition.calls} <= {"DetectFaces", "SearchFacesByImage", "ListFaces"}
        assert outcomes["upload"][2]["actions"][-1] == {
            "action": "add_tags", "public_id": "events/offsite-2024/team-dinner", "tags": [f"face:{JOSE}"]}
        assert cdn_server.paths and all(path.startswith(f"/{CLOUD_NAME}/image/upload/s--")
                                        for path in cdn_server.paths)


def test_eager_email_sends_once_through_the_dynamodb_store_with_the_runtime_s_botocore(start_runtime, cloudinary,
                                                                                       lambda_py, task_roots):
    """The idempotency store template.yaml gives Lambda deployments (its DynamoDB table), for real: the bundle's
    trimmed DynamoDB model (shared/botocore_data) read by the runtime's own botocore, on the wire to a DynamoDB
    stand-in, and Cloudinary's retry of the same notification sending nothing twice."""
    # The client the store builds in the runtime's Python from the bundle: the trimmed model, and AWS's own
    # regional endpoint when none is set (the stand-in's address below skips endpoint resolution).
    probe = subprocess.run(
        [str(lambda_py.executable), "-I", "-c", "import json, sys; sys.path.insert(0, '.'); "
         "from shared import idempotency; client = idempotency._DynamoStore('t', 'eu-west-1', None, 3.0, 2)._create(); "
         "print(json.dumps([sorted(client.meta.service_model.operation_names), client.meta.endpoint_url]))"],
        cwd=task_roots["eager_email"], capture_output=True, text=True, timeout=60, check=True,
        env={"AWS_ACCESS_KEY_ID": "platform-test-key-id", "AWS_SECRET_ACCESS_KEY": "platform-test-secret-access-key",
             "HOME": "/nonexistent"})
    assert json.loads(probe.stdout) == [sorted(idempotency.DYNAMODB_OPERATIONS),
                                        "https://dynamodb.eu-west-1.amazonaws.com"]

    sendgrid, dynamodb = FakeSendGrid(), FakeDynamoDB("webhooks-idempotency")
    sendgrid_url = sendgrid.start()
    try:
        runtime = start_runtime(
            "eager_email", secrets={"CLOUDINARY_URL": cloudinary_url(cloudinary), "SENDGRID_API_KEY": SENDGRID_KEY},
            parameters={"DryRun": "0", "IdempotencyTable": dynamodb.table},
            extra_env={"SENDGRID_API_HOST": sendgrid_url, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url})
        assert runtime.environment["IDEMPOTENCY_TABLE"] == dynamodb.table  # template.yaml gives it
        eager = samples("eager_email")["eager"]

        first_status, first, _, first_id = answer(runtime, signed_event(eager))
        retry_status, retry, _, retry_id = answer(runtime, signed_event(eager, base64_body=True))
        lines = check_logs(runtime, [first_id, retry_id])
    finally:
        sendgrid.stop()
        dynamodb.stop()

    assert (first_status, first["status"]) == (200, "done"), first
    assert (retry_status, retry["status"]) == (200, "done"), retry
    assert len(sendgrid.accepted) == 1  # the retry sent nothing
    assert sendgrid.accepted[0].recipients == ("ops@example.com", "team@example.com")
    # Claimed, completed; then the retry's claim finds the completed record and stops there.
    assert dynamodb.operations() == ["PutItem", "UpdateItem", "PutItem"]
    claim = dynamodb.requests[0][1]
    assert claim["TableName"] == "webhooks-idempotency"
    assert claim["ConditionExpression"] == "attribute_not_exists(#key) OR #expires_at < :now"
    assert claim["Item"]["status"] == {"S": "in_progress"} and claim["Item"]["function"] == {"S": "eager_email"}
    assert dynamodb.items[claim["Item"]["key"]["S"]]["status"] == {"S": "completed"}
    assert (lines[first_id].get("idempotency"), lines[retry_id].get("idempotency")) == ("done", "repeat")


@pytest.mark.postgres
def test_asset_sync_writes_postgresql_through_awslambdaric(start_runtime):
    test_database = os.environ.get("TEST_DATABASE_URL", "")
    if not test_database:
        pytest.fail("TEST_DATABASE_URL is not set, so there is no PostgreSQL to test against. Run the tests with "
                    "`make test` or `bash scripts/test.sh`: they start a throwaway PostgreSQL (scripts/postgres.sh) "
                    "and set it.", pytrace=False)
    # A database of its own on the throwaway server: other tests drop and recreate their tables.
    database = urlsplit(test_database)._replace(path="/lambda_platform_test").geturl()
    with pg.admin(test_database) as connection:
        connection.execute("DROP DATABASE IF EXISTS lambda_platform_test WITH (FORCE)")
        connection.execute("CREATE DATABASE lambda_platform_test")
    runtime = start_runtime("asset_sync", secrets={"CLOUDINARY_URL": f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}",
                                                   "DATABASE_URL": database}, parameters={"DryRun": "0"})
    assert runtime.environment["DATABASE_URL"] == database  # template.yaml gives it

    bodies = samples("asset_sync")
    order = ["upload", *(sample for sample in bodies if sample != "upload")]
    request_ids, outcomes = [], {}
    for index, sample in enumerate(order):
        status, reply, _, request_id = answer(runtime, signed_event(bodies[sample], base64_body=index % 2 == 0))
        request_ids.append(request_id)
        outcomes[sample] = (status, reply.get("status"))
    assert outcomes == {sample: (200, "done") for sample in order}
    # A retry of the same notification is recognised: recorded once, answered 200.
    status, reply, _, request_id = answer(runtime, signed_event(bodies["upload"]))
    assert (status, reply["status"]) == (200, "ignored") and "already recorded" in reply["reason"]
    request_ids.append(request_id)
    request_ids += common_requests(runtime, bodies["upload"])
    check_logs(runtime, request_ids)

    upload = json.loads(bodies["upload"])
    with pg.admin(database) as connection:
        events = connection.execute("SELECT notification_type, payload FROM cloudinary_events ORDER BY id").fetchall()
        rows = connection.execute("SELECT count(*) FROM cloudinary_assets WHERE asset_id = %s",
                                  (upload["asset_id"],)).fetchone()
    with pg.admin(test_database) as connection:
        connection.execute("DROP DATABASE lambda_platform_test WITH (FORCE)")
    assert [kind for kind, _ in events] == [json.loads(bodies[sample])["notification_type"] for sample in order]
    assert events[0][1] == bodies["upload"].decode("utf-8")  # the body exactly as signed (it came base64)
    assert rows == (1,)  # the uploaded asset's row


def test_the_runtime_python_brings_no_dependency_of_the_functions(lambda_py):
    """Lambda's python3.12 has boto3 and nothing the functions need besides: what they import at run time must
    come from their bundles (so the answers above prove the bundles carry it)."""
    probe = subprocess.run(
        [str(lambda_py.executable), "-I", "-c", "import importlib.util, json; print(json.dumps({name: bool("
         "importlib.util.find_spec(name)) for name in ('awslambdaric', 'boto3', 'cloudinary', 'PIL', 'psycopg2', "
         "'sendgrid', 'requests', 'shared', 'functions')}))"],
        capture_output=True, text=True, timeout=60, check=True, cwd="/")
    assert json.loads(probe.stdout) == {"awslambdaric": True, "boto3": True, "cloudinary": False, "PIL": False,
                                        "psycopg2": False, "sendgrid": False, "requests": False, "shared": False,
                                        "functions": False}


def test_asset_sync_without_database_url_is_not_configured(start_runtime):
    """Lambda's task folder is read-only: with no DATABASE_URL, the default SQLite file cannot be written there.
    That is a setup error, to be fixed by a person (500 not_configured), not a retryable 503."""
    # As deployed with `aws lambda create-function --environment Variables={CLOUDINARY_URL=...}` only.
    runtime = start_runtime("asset_sync", secrets={"CLOUDINARY_URL": f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}",
                                                   "DATABASE_URL": None}, parameters={"DryRun": "0"})
    assert "DATABASE_URL" not in runtime.environment

    status, reply, _, request_id = answer(runtime, signed_event(samples("asset_sync")["upload"]))

    assert (status, reply.get("error")) == (500, "not_configured"), reply
    assert "DATABASE_URL" not in json.dumps(reply)  # the log says which variable, the answer does not
    log_line = check_logs(runtime, [request_id])[request_id]
    assert (log_line["status"], log_line["error"]) == (500, "not_configured") and "DATABASE_URL" in log_line["detail"]
