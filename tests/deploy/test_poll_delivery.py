"""deploy.toml's `delivery = "poll"` (DESIGN.md §8): what the deploy files make of it, and the Vercel entry point
draining a channel when Vercel's cron calls it. (AWS's own SAM transform of a poll function is checked in
tests/platform/sam_netlify/test_sam_poll.py.)"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from devtools import deploy
from shared import dead_letters
from tests.fakes.notifications import FakeNotifications, signed_message
from tests.helpers import API_KEY, CLOUD_NAME, SECRET

ROOT = deploy.PROJECT_ROOT


def config_with(**functions: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(deploy.load_config())
    for name, settings in functions.items():
        config.setdefault("functions", {}).setdefault(name, {}).update(settings)
    return config


POLL = config_with(hello_tag={"delivery": "poll"})


def test_the_committed_configuration_delivers_by_webhook_unless_told():
    assert all(deploy.function_spec(name).delivery == "webhook" for name in deploy.function_names())


def test_a_poll_function_gets_a_schedule_instead_of_a_function_url():
    resources = deploy.template_data(POLL)["Resources"]
    properties = resources["HelloTagFunction"]["Properties"]

    assert "FunctionUrlConfig" not in properties
    assert properties["Events"] == {"PollSchedule": {"Type": "Schedule", "Properties": {
        "Schedule": "rate(1 minute)", "Description": "Drain Cloudinary's poll://hello_tag channel through hello_tag"}}}
    assert properties["EventInvokeConfig"] == {"MaximumRetryAttempts": 0}  # the next run is the retry
    assert properties["Handler"] == "functions/hello_tag/handler.handler"  # the same handler
    assert resources["EagerEmailFunction"]["Properties"]["FunctionUrlConfig"] == {"AuthType": "NONE"}


def test_a_poll_function_keeps_its_dead_letters_in_database_url_from_secrets_manager():
    variables = deploy.template_data(POLL)["Resources"]["HelloTagFunction"]["Properties"]["Environment"]["Variables"]

    assert variables["DATABASE_URL"] == deploy.secret_reference("DATABASE_URL")
    webhook_variables = deploy.template_data()["Resources"]["HelloTagFunction"]["Properties"]["Environment"]
    assert "DATABASE_URL" not in webhook_variables["Variables"]


def test_a_poll_function_outputs_its_channel_not_a_url():
    outputs = deploy.template_data(POLL)["Outputs"]

    assert "HelloTagFunctionUrl" not in outputs
    assert outputs["HelloTagFunctionPollChannel"]["Value"] == "poll://hello_tag"
    assert "EagerEmailFunctionUrl" in outputs


@pytest.mark.parametrize(("minutes", "rate", "cron"), [(1, "rate(1 minute)", "* * * * *"),
                                                       (5, "rate(5 minutes)", "*/5 * * * *")])
def test_the_schedule_follows_poll_minutes(minutes, rate, cron):
    config = config_with(hello_tag={"delivery": "poll", "poll_minutes": minutes})

    events = deploy.template_data(config)["Resources"]["HelloTagFunction"]["Properties"]["Events"]
    assert events["PollSchedule"]["Properties"]["Schedule"] == rate
    assert deploy.vercel_data(config, current={})["crons"] == [{"path": "/api/hello_tag", "schedule": cron}]


def test_a_poll_function_may_run_longer_than_cloudinarys_20_seconds_a_webhook_may_not():
    deploy.template_data(config_with(hello_tag={"delivery": "poll", "timeout": 60}))
    with pytest.raises(ValueError, match="20 s"):
        deploy.template_data(config_with(hello_tag={"timeout": 20}))
    with pytest.raises(ValueError, match="1 to 900"):
        deploy.template_data(config_with(hello_tag={"delivery": "poll", "timeout": 901}))


@pytest.mark.parametrize("settings", [{"delivery": "email"}, {"delivery": "poll", "poll_minutes": 0},
                                      {"delivery": "poll", "poll_minutes": "5"}])
def test_a_wrong_delivery_setting_is_refused_by_name(settings):
    with pytest.raises(ValueError, match=r"deploy\.toml: hello_tag's"):
        deploy.template_data(config_with(hello_tag=settings))


@pytest.mark.slow
def test_the_poll_template_passes_cfn_lint(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(deploy.render_template(POLL))

    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(template)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- vercel.json --------------------------------------------------------------------------------------------

def test_vercel_json_gets_one_cron_per_poll_function_and_keeps_everything_else():
    current = json.loads((ROOT / "vercel.json").read_text())
    current["crons"] = [{"path": "/api/someone_elses_job", "schedule": "0 3 * * *"},
                        {"path": "/api/eager_email", "schedule": "0 * * * *"}]  # ours, no longer poll: dropped

    data = deploy.vercel_data(POLL, current=current)

    assert data["functions"] == current["functions"] and data["$schema"] == current["$schema"]
    assert data["crons"] == [{"path": "/api/someone_elses_job", "schedule": "0 3 * * *"},
                             {"path": "/api/hello_tag", "schedule": "* * * * *"}]


def test_vercel_json_without_poll_functions_has_no_crons():
    current = json.loads((ROOT / "vercel.json").read_text())

    assert "crons" not in deploy.vercel_data(current={**current, "crons": [{"path": "/api/hello_tag",
                                                                            "schedule": "* * * * *"}]})
    assert deploy.render_vercel_json() == (ROOT / "vercel.json").read_text()


def test_the_drain_fits_in_vercels_max_duration():
    from shared import poll

    max_duration = json.loads((ROOT / "vercel.json").read_text())["functions"]["api/*.py"]["maxDuration"]
    assert max_duration - 2 >= poll.DEFAULT_CRON_DRAIN_SECONDS


def _load_shim(name: str):
    spec = importlib.util.spec_from_file_location(f"vercel_shim_{name}", ROOT / "api" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vercels_cron_request_drains_the_channel_through_the_shim(monkeypatch, tmp_path):
    fake = FakeNotifications(CLOUD_NAME, API_KEY, SECRET)
    prefix = fake.start()
    try:
        monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}")
        monkeypatch.setenv("CRON_SECRET", "a-cron-secret-of-32-characters!!")
        monkeypatch.setattr(dead_letters, "DEFAULT_SQLITE_PATH", str(tmp_path / "dead-letters.sqlite3"))
        fake.publish("hello_tag", signed_message({"notification_type": "upload", "public_id": "samples/dog",
                                                  "resource_type": "image", "type": "upload"}, SECRET))
        client = Client(_load_shim("hello_tag").app)

        refused = client.get("/api/hello_tag", headers={"User-Agent": "vercel-cron/1.0",
                                                        "Authorization": "Bearer not-it"})
        assert refused.status_code == 401 and fake.seen == []
        drained = client.get("/api/hello_tag", headers={"User-Agent": "vercel-cron/1.0",
                                                        "Authorization": "Bearer a-cron-secret-of-32-characters!!"})
    finally:
        fake.stop()

    assert drained.status_code == 200, drained.get_data(as_text=True)
    assert drained.get_json()["acked"] == 1
    assert fake.tagged == [("Hello World!", "samples/dog")] and fake.acked == [1]


def test_a_poll_functions_bundle_gets_the_dead_letter_stores_driver(monkeypatch):
    from devtools import bundle

    assert not any(r.startswith("psycopg2") for r in bundle.bundle_requirements("hello_tag"))
    monkeypatch.setattr(deploy, "load_config", lambda: POLL)

    assert bundle.bundle_requirements("hello_tag") == ["cloudinary>=1.46,<2", *deploy.POLL_REQUIREMENTS]
    assert deploy.POLL_REQUIREMENTS[0] in (ROOT / "requirements.txt").read_text()  # the version the tests use
