"""A poll function (deploy.toml `delivery = "poll"`) as AWS makes it: the template rendered with hello_tag in poll
mode, run through AWS's own SAM transform and linters (the venv of scripts/platform/sam.sh). The stack then has an
EventBridge rule invoking the function every minute, with the one permission that needs, and no Function URL, no
public invoke permission and no URL output for it; the other functions are untouched."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from devtools import deploy
from tests.platform.sam_netlify.conftest import HERE, run_tool, sam_lint, sam_pins

pytestmark = pytest.mark.platform

POLLED = "hello_tag"
FUNCTION = deploy.function_spec(POLLED).logical_id
# cfn-lint-serverless asks every asynchronously invoked function for an on-failure destination (ES1007) and every
# EventBridge target for a dead-letter queue (ES4000). A schedule's event carries no data: what a failed drain did
# not handle is still in Cloudinary's channel, and the next run drains it. Nothing to keep, so admitted.
ADMITTED_ON_POLL_FUNCTION = {"ES1007", "ES4000"}
ADMITTED_EVERYWHERE = {"WS1004"}  # see test_sam.py: the rule does not see LoggingConfig.LogGroup


def poll_config(minutes: int = 1) -> dict[str, Any]:
    config = copy.deepcopy(deploy.load_config())
    config.setdefault("functions", {}).setdefault(POLLED, {}).update(delivery="poll", poll_minutes=minutes)
    return config


@pytest.fixture(scope="module")
def poll_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("poll") / "template.yaml"
    path.write_text(deploy.render_template(poll_config()))
    return path


@pytest.fixture(scope="module")
def transformed(sam_python, poll_template) -> dict[str, Any]:
    result = run_tool([str(sam_python), str(HERE / "sam_transform.py"), str(poll_template)])
    assert result.returncode == 0, f"the SAM transform refused the poll template:\n{result.stderr[-4000:]}"
    output = json.loads(result.stdout)
    assert output["versions"] == sam_pins()
    return output["template"]


def of_function(template: dict[str, Any], kind: str, function: str) -> list[dict[str, Any]]:
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != kind:
            continue
        text = json.dumps(resource["Properties"])
        if f'"Ref": "{function}"' in text or f'["{function}", "Arn"]' in text:
            found.append(resource["Properties"])
    return found


def test_sam_validate_lint_passes_on_the_poll_template(sam_python, poll_template):
    result = sam_lint(sam_python, poll_template)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_poll_function_is_invoked_by_a_schedule_rule_every_minute(transformed):
    (rule,) = of_function(transformed, "AWS::Events::Rule", FUNCTION)
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule.get("State", "ENABLED") == "ENABLED"
    assert rule["Targets"] == [{"Arn": {"Fn::GetAtt": [FUNCTION, "Arn"]}, "Id": f"{FUNCTION}PollScheduleLambdaTarget"}]
    (permission,) = of_function(transformed, "AWS::Lambda::Permission", FUNCTION)
    assert permission == {"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": FUNCTION},
                          "Principal": "events.amazonaws.com",
                          "SourceArn": {"Fn::GetAtt": [f"{FUNCTION}PollSchedule", "Arn"]}}


def test_the_poll_function_has_no_url_no_public_permission_and_no_url_output(transformed):
    assert of_function(transformed, "AWS::Lambda::Url", FUNCTION) == []
    assert f"{FUNCTION}Url" not in transformed["Resources"]
    assert all(permission["Principal"] != "*" for permission in of_function(transformed, "AWS::Lambda::Permission",
                                                                             FUNCTION))
    assert f"{FUNCTION}Url" not in transformed["Outputs"]
    assert transformed["Outputs"][f"{FUNCTION}PollChannel"]["Value"] == f"poll://{POLLED}"


def test_a_failed_drain_is_not_retried_by_lambda(transformed):
    (config,) = of_function(transformed, "AWS::Lambda::EventInvokeConfig", FUNCTION)
    assert config["MaximumRetryAttempts"] == 0 and config["Qualifier"] == "$LATEST"


def test_the_poll_function_gets_database_url_for_its_dead_letters(transformed):
    variables = transformed["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["DATABASE_URL"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${SecretName}:SecretString:DATABASE_URL}}"}
    assert variables["CLOUDINARY_URL"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${SecretName}:SecretString:CLOUDINARY_URL}}"}


def test_the_other_functions_keep_their_urls(transformed):
    for name in deploy.function_names():
        if name == POLLED:
            continue
        function = deploy.function_spec(name).logical_id
        (url,) = of_function(transformed, "AWS::Lambda::Url", function)
        assert url == {"AuthType": "NONE", "TargetFunctionArn": {"Ref": function}}
        assert of_function(transformed, "AWS::Events::Rule", function) == []


def test_poll_minutes_sets_the_rate(sam_python, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(deploy.render_template(poll_config(minutes=5)))
    result = run_tool([str(sam_python), str(HERE / "sam_transform.py"), str(template)])
    assert result.returncode == 0, result.stderr[-2000:]
    (rule,) = of_function(json.loads(result.stdout)["template"], "AWS::Events::Rule", FUNCTION)
    assert rule["ScheduleExpression"] == "rate(5 minutes)"


def test_serverless_rules_find_only_what_is_explained(sam_python, poll_template):
    result = run_tool([str(sam_python.with_name("cfn-lint")), "-a", "cfn_lint_serverless.rules", "-f", "json",
                       "-t", str(poll_template)])
    # 2: errors, 4: warnings (ES1007 and ES4000 are errors); any other bit is cfn-lint failing to run
    assert result.returncode in (0, 2, 4, 6), result.stdout + result.stderr
    findings = json.loads(result.stdout or "[]")
    unexplained = [f"{f['Rule']['Id']} {f['Location']['Path'][:2]} {f['Message']}" for f in findings
                   if f["Rule"]["Id"] not in ADMITTED_EVERYWHERE
                   and not (f["Rule"]["Id"] in ADMITTED_ON_POLL_FUNCTION and f["Location"]["Path"][1] == FUNCTION)]
    assert not unexplained
