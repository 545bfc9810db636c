"""template.yaml as AWS runs it: `sam validate --lint` (cfn-lint's API, as SAM CLI calls it), then AWS's own SAM
transform, whose output is the stack CloudFormation creates: every function has its public Function URL with both
invoke permissions, its log group with the retention parameter, X-Ray tracing, only deploy.toml's IAM actions and
its credentials from Secrets Manager. Then AWS's serverless best-practice rules (cfn-lint-serverless)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools import deploy
from tests.platform.sam_netlify.conftest import TEMPLATE, run_tool, sam_lint

pytestmark = pytest.mark.platform

NAMES = deploy.function_names()
SPECS = {name: deploy.function_spec(name) for name in NAMES}
ADMITTED_SERVERLESS_FINDINGS = {"WS1004"}  # see test_serverless_rules_find_only_what_the_readme_explains


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def test_sam_validate_lint_passes(sam_python):
    """What `sam validate --lint` runs: cfnlint.api.lint on the template's text with default settings."""
    result = sam_lint(sam_python, TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_transformed_template_passes_cfn_lint(sam_python, sam_transformed, tmp_path):
    """The CloudFormation the transform makes is valid against CloudFormation's own resource schemas too (what
    cfn-lint checked before 1.54, when it still ran the transform itself)."""
    transformed = tmp_path / "transformed.json"
    transformed.write_text(json.dumps(sam_transformed, indent=1))
    result = run_tool([str(sam_python.with_name("cfn-lint")), "-t", str(transformed)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_each_function_has_a_public_url_and_both_invoke_permissions(sam_transformed, name):
    """Since October 2025 a public (AuthType NONE) Function URL needs lambda:InvokeFunctionUrl and
    lambda:InvokeFunction; the second only for calls through the URL, or anyone could invoke the function
    directly through the Lambda API."""
    function = SPECS[name].logical_id
    resources = sam_transformed["Resources"]
    assert resources[function]["Type"] == "AWS::Lambda::Function"
    url = resources[f"{function}Url"]
    assert url["Type"] == "AWS::Lambda::Url"
    assert url["Properties"] == {"AuthType": "NONE", "TargetFunctionArn": {"Ref": function}}

    permissions = [resource["Properties"] for resource in resources_of(sam_transformed, "AWS::Lambda::Permission")
                   .values() if resource["Properties"]["FunctionName"] == {"Ref": function}]
    by_action = {permission["Action"]: permission for permission in permissions}
    assert len(by_action) == len(permissions) == 2, permissions
    assert by_action["lambda:InvokeFunctionUrl"] == {"Action": "lambda:InvokeFunctionUrl", "Principal": "*",
                                                     "FunctionName": {"Ref": function}, "FunctionUrlAuthType": "NONE"}
    assert by_action["lambda:InvokeFunction"] == {"Action": "lambda:InvokeFunction", "Principal": "*",
                                                  "FunctionName": {"Ref": function}, "InvokedViaFunctionUrl": True}
    assert sam_transformed["Outputs"][f"{function}Url"]["Value"] == {"Fn::GetAtt": [f"{function}Url", "FunctionUrl"]}


def test_log_retention_is_a_parameter_cloudwatch_accepts(sam_transformed, log_retention_days):
    parameter = sam_transformed["Parameters"]["LogRetentionDays"]
    assert parameter["Type"] == "Number"
    assert parameter["Default"] == 30
    assert parameter["AllowedValues"] == log_retention_days  # exactly the values AWS::Logs::LogGroup takes


@pytest.mark.parametrize("name", NAMES)
def test_each_function_logs_to_its_own_log_group_with_that_retention(sam_transformed, name):
    function = SPECS[name].logical_id
    properties = sam_transformed["Resources"][function]["Properties"]
    logging = properties["LoggingConfig"]
    log_group = logging["LogGroup"]["Ref"]
    assert logging["LogFormat"] == "Text"
    group = sam_transformed["Resources"][log_group]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}/{name}"}
    # one group per function: no two functions' logs mixed
    others = [SPECS[other].logical_id for other in NAMES if other != name]
    assert all(sam_transformed["Resources"][other]["Properties"]["LoggingConfig"]["LogGroup"] != {"Ref": log_group}
               for other in others)


@pytest.mark.parametrize("name", NAMES)
def test_each_function_is_traced_with_the_permissions_xray_needs(sam_transformed, name):
    function = SPECS[name].logical_id
    properties = sam_transformed["Resources"][function]["Properties"]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    role = sam_transformed["Resources"][properties["Role"]["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    managed = [json.dumps(arn) for arn in role["Properties"]["ManagedPolicyArns"]]
    assert any("policy/AWSXrayWriteOnlyAccess" in arn for arn in managed), managed
    assert any("policy/service-role/AWSLambdaBasicExecutionRole" in arn for arn in managed), managed


@pytest.mark.parametrize("name", NAMES)
def test_each_role_grants_exactly_the_iam_actions_of_deploy_toml(sam_transformed, name):
    function = SPECS[name].logical_id
    properties = sam_transformed["Resources"][function]["Properties"]
    role = sam_transformed["Resources"][properties["Role"]["Fn::GetAtt"][0]]["Properties"]
    granted = [statement for policy in role.get("Policies", [])
               for statement in policy["PolicyDocument"]["Statement"]]
    expected = [{"Effect": "Allow", "Action": statement["actions"],
                 "Resource": {"Fn::Sub": statement["resource"]} if "${" in statement["resource"]
                 else statement["resource"]} for statement in SPECS[name].statements]
    if deploy.IDEMPOTENCY_VARIABLE in SPECS[name].optional:  # its idempotency records, in the stack's table
        expected.append({"Effect": "Allow", "Action": list(deploy.IDEMPOTENCY_ACTIONS),
                         "Resource": {"Fn::GetAtt": [deploy.IDEMPOTENCY_TABLE, "Arn"]}})
    assert granted == expected


def test_functions_that_send_emails_record_them_in_the_stacks_idempotency_table(sam_transformed):
    # shared/idempotency.py's DynamoDB layout: partition key "key" (S), TTL on "expires_at" (epoch seconds)
    table = sam_transformed["Resources"][deploy.IDEMPOTENCY_TABLE]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": "key", "AttributeType": "S"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    users = [name for name in NAMES if deploy.IDEMPOTENCY_VARIABLE in SPECS[name].optional]
    assert "eager_email" in users
    for name in users:
        variables = sam_transformed["Resources"][SPECS[name].logical_id]["Properties"]["Environment"]["Variables"]
        assert variables[deploy.IDEMPOTENCY_VARIABLE] == {"Ref": deploy.IDEMPOTENCY_TABLE}


def test_face_tagging_may_call_rekognition_on_its_own_collection_only(sam_transformed):
    role = sam_transformed["Resources"]["FaceTaggingFunctionRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    on_collection = next(s for s in statements if "rekognition:IndexFaces" in s["Action"])
    assert sorted(on_collection["Action"]) == sorted(["rekognition:SearchFacesByImage", "rekognition:IndexFaces",
                                                      "rekognition:ListFaces", "rekognition:DeleteFaces",
                                                      "rekognition:CreateCollection"])
    assert on_collection["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:rekognition:${AWS::Region}:"
                                                    "${AWS::AccountId}:collection/${RekognitionCollectionId}"}
    anywhere = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in anywhere] == [["rekognition:DetectFaces"]]  # IAM allows no narrower resource


@pytest.mark.parametrize("name", NAMES)
def test_each_credential_comes_from_secrets_manager(sam_transformed, name):
    variables = sam_transformed["Resources"][SPECS[name].logical_id]["Properties"]["Environment"]["Variables"]
    for variable, value in variables.items():
        if deploy.is_secret(variable):
            assert value == {"Fn::Sub": f"{{{{resolve:secretsmanager:${{SecretName}}:SecretString:{variable}}}}}"}
    for variable in SPECS[name].requires:
        assert variable in variables, f"{name} needs {variable}"


def test_asset_sync_gets_its_database_url_from_secrets_manager(sam_transformed):
    variables = sam_transformed["Resources"]["AssetSyncFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DATABASE_URL"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${SecretName}:SecretString:DATABASE_URL}}"}


def test_serverless_rules_find_only_what_the_readme_explains(sam_python):
    """AWS's serverless rules for cfn-lint. WS1004 ("no log group with retention") is admitted: the rule only
    recognises a log group named /aws/lambda/<function name>, not one wired through LoggingConfig.LogGroup, which
    is how every function here gets its log group (checked above, and with its retention)."""
    result = run_tool([str(sam_python.with_name("cfn-lint")), "-a", "cfn_lint_serverless.rules", "-f", "json",
                       "-t", str(TEMPLATE)])
    assert result.returncode in (0, 4), result.stdout + result.stderr  # 4: warnings only
    findings = json.loads(result.stdout or "[]")
    unexplained = [f"{f['Rule']['Id']} {f['Message']}" for f in findings
                   if f["Rule"]["Id"] not in ADMITTED_SERVERLESS_FINDINGS]
    assert not unexplained
    functions = {SPECS[name].logical_id for name in NAMES}
    assert all(f["Location"]["Path"][:2] == ["Resources", f["Location"]["Path"][1]]
               and f["Location"]["Path"][1] in functions for f in findings)  # on the functions, nowhere else
