"""asset_sync's nightly reconcile (deploy.toml `reconcile = "cron(...)"`) as AWS makes it: the template rendered with
the schedule set, run through AWS's own SAM transform and linters (the venv of scripts/platform/sam.sh). The stack
then has an EventBridge rule invoking asset_sync with the input {"reconcile": {...}} (the event its Lambda handler
runs the reconcile for), the one permission that needs, no Lambda retry of a failed run; and asset_sync keeps its
Function URL for the notifications."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from devtools import deploy
from tests.platform.sam_netlify.conftest import HERE, run_tool, sam_lint, sam_pins
from tests.platform.sam_netlify.test_sam_poll import ADMITTED_EVERYWHERE, of_function

pytestmark = pytest.mark.platform

FUNCTION = deploy.function_spec("asset_sync").logical_id
# As for a poll function (test_sam_poll.py): an asynchronously invoked function without an on-failure destination
# (ES1007), an EventBridge target without a dead-letter queue (ES4000). The schedule's event carries only options:
# a failed run lost nothing (the pass's cursor is in the database) and the next scheduled run continues it.
ADMITTED_ON_ASSET_SYNC = {"ES1007", "ES4000"}


def reconcile_config(setting: Any) -> dict[str, Any]:
    config = copy.deepcopy(deploy.load_config())
    config.setdefault("functions", {}).setdefault("asset_sync", {})["reconcile"] = setting
    return config


def transform(sam_python: Path, template: Path) -> dict[str, Any]:
    result = run_tool([str(sam_python), str(HERE / "sam_transform.py"), str(template)])
    assert result.returncode == 0, f"the SAM transform refused the template:\n{result.stderr[-4000:]}"
    output = json.loads(result.stdout)
    assert output["versions"] == sam_pins()
    return output["template"]


@pytest.fixture(scope="module")
def reconcile_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reconcile") / "template.yaml"
    path.write_text(deploy.render_template(reconcile_config("cron(0 3 * * ? *)")))
    return path


@pytest.fixture(scope="module")
def transformed(sam_python, reconcile_template) -> dict[str, Any]:
    return transform(sam_python, reconcile_template)


def test_sam_validate_lint_passes_on_the_reconcile_template(sam_python, reconcile_template):
    result = sam_lint(sam_python, reconcile_template)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_nightly_rule_invokes_asset_sync_with_the_reconcile_input(transformed):
    (rule,) = of_function(transformed, "AWS::Events::Rule", FUNCTION)
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert rule.get("State", "ENABLED") == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert json.loads(target["Input"]) == {"reconcile": {}}  # what shared/webhook.py hands to the scheduled task
    (permission,) = [p for p in of_function(transformed, "AWS::Lambda::Permission", FUNCTION)
                     if p["Principal"] == "events.amazonaws.com"]
    assert permission == {"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": FUNCTION},
                          "Principal": "events.amazonaws.com",
                          "SourceArn": {"Fn::GetAtt": [f"{FUNCTION}ReconcileSchedule", "Arn"]}}
    (config,) = of_function(transformed, "AWS::Lambda::EventInvokeConfig", FUNCTION)
    assert config["MaximumRetryAttempts"] == 0


def test_asset_sync_keeps_its_function_url_and_the_others_get_no_rule(transformed):
    (url,) = of_function(transformed, "AWS::Lambda::Url", FUNCTION)
    assert url == {"AuthType": "NONE", "TargetFunctionArn": {"Ref": FUNCTION}}
    assert transformed["Outputs"][f"{FUNCTION}Url"]["Value"] == {"Fn::GetAtt": [f"{FUNCTION}Url", "FunctionUrl"]}
    for name in deploy.function_names():
        if name != "asset_sync" and deploy.delivery_of(name) == "webhook":
            assert of_function(transformed, "AWS::Events::Rule", deploy.function_spec(name).logical_id) == []


def test_options_in_a_table_become_the_rule_input(sam_python, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(deploy.render_template(reconcile_config(
        {"schedule": "cron(0/5 1-4 * * ? *)", "reserve": 200, "expression": "folder:shop/*"})))
    (rule,) = of_function(transform(sam_python, template), "AWS::Events::Rule", FUNCTION)
    assert rule["ScheduleExpression"] == "cron(0/5 1-4 * * ? *)"
    assert json.loads(rule["Targets"][0]["Input"]) == {"reconcile": {"expression": "folder:shop/*", "reserve": 200}}


def test_a_schedule_that_is_no_schedule_expression_is_refused():
    for setting in ("03:00", "cron(0 3 * * ? *", {"reserve": 10}, 3):
        with pytest.raises(ValueError, match="asset_sync's reconcile must be an EventBridge schedule expression"):
            deploy.template_data(reconcile_config(setting))


def test_serverless_rules_find_only_what_is_explained(sam_python, reconcile_template):
    result = run_tool([str(sam_python.with_name("cfn-lint")), "-a", "cfn_lint_serverless.rules", "-f", "json",
                       "-t", str(reconcile_template)])
    assert result.returncode in (0, 2, 4, 6), result.stdout + result.stderr
    findings = json.loads(result.stdout or "[]")
    unexplained = [f"{f['Rule']['Id']} {f['Location']['Path'][:2]} {f['Message']}" for f in findings
                   if f["Rule"]["Id"] not in ADMITTED_EVERYWHERE
                   and not (f["Rule"]["Id"] in ADMITTED_ON_ASSET_SYNC and f["Location"]["Path"][1] == FUNCTION)]
    assert not unexplained
