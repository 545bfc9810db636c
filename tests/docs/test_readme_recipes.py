"""The README's AWS CLI recipes, checked against the AWS API they call (botocore's own Lambda model): every
option names a real parameter, and a public Function URL gets both permissions AWS requires since
October 2025 (InvokeFunctionUrl, and InvokeFunction invoked via the URL), else every call is a 403."""

from __future__ import annotations

import re
import shlex

import botocore.session
import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"


def aws_lambda_commands() -> list[list[str]]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("aws lambda "):
                commands.append(shlex.split(line))
    return commands


def parameter_name(option: str) -> str:
    """The AWS CLI's --kebab-case option for an API member, as the CLI derives it."""
    return "".join(part.capitalize() for part in option.removeprefix("--").split("-"))


CLI_ONLY_OPTIONS = {"--zip-file": "Code"}  # the CLI reads the file into Code.ZipFile


def test_the_readme_has_aws_lambda_recipes():
    assert len(aws_lambda_commands()) >= 4


@pytest.mark.parametrize("command", aws_lambda_commands(), ids=lambda c: " ".join(c[:3]))
def test_every_option_is_a_parameter_of_the_lambda_api(command):
    model = botocore.session.get_session().get_service_model("lambda")
    operation = model.operation_model("".join(part.capitalize() for part in command[2].split("-")))
    members = {name.lower(): name for name in operation.input_shape.members}
    for option in (word for word in command[3:] if word.startswith("--")):
        expected = CLI_ONLY_OPTIONS.get(option) or parameter_name(option)
        assert expected.lower() in members, f"{command[2]}: {option} is not a parameter of {operation.name}"


def test_a_public_function_url_gets_both_invoke_permissions():
    commands = aws_lambda_commands()
    url_functions = {c[c.index("--function-name") + 1] for c in commands if c[2] == "create-function-url-config"
                     and c[c.index("--auth-type") + 1] == "NONE"}
    assert url_functions
    for function in url_functions:
        grants = [c for c in commands if c[2] == "add-permission" and c[c.index("--function-name") + 1] == function]
        actions = {c[c.index("--action") + 1]: c for c in grants}
        assert set(actions) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}, function
        url_grant, invoke_grant = actions["lambda:InvokeFunctionUrl"], actions["lambda:InvokeFunction"]
        assert url_grant[url_grant.index("--function-url-auth-type") + 1] == "NONE"
        assert "--invoked-via-function-url" in invoke_grant
        assert len({c[c.index("--statement-id") + 1] for c in grants}) == 2  # ids must differ
