"""Run AWS's SAM transform on a template, in-process, as cfn-lint ran it before 1.54 and as CloudFormation runs
``Transform: AWS::Serverless-2016-10-31``; print the CloudFormation template it produces as JSON.

    .cache/platform/sam/bin/python tests/platform/sam_netlify/sam_transform.py template.yaml

Runs under scripts/platform/sam.sh's venv (aws-sam-translator, cfn-lint), never the project's: stdlib and those
two only. Local CodeUri paths become S3 URIs first, as `sam package` makes them. IAM's list of AWS managed
policies is the one thing the transform asks AWS for; the template names none, so the loader is empty (and a
name the template did use would fail the transform, as it would in CloudFormation without that policy).
"""

from __future__ import annotations

import json
import os
import sys


class NoManagedPolicies:
    """samtranslator's ManagedPolicyLoader, without the IAM ListPolicies call."""

    def load(self) -> dict[str, str]:
        return {}


def main(path: str) -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the transform builds ARNs for this region
    from importlib.metadata import version

    from cfnlint.decode import cfn_yaml
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(cfn_yaml.load(path)))  # CloudFormation's YAML (short tags) as plain JSON
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            code = resource["Properties"]["CodeUri"]
            resource["Properties"]["CodeUri"] = f"s3://deployment-bucket/{code}"
    output = transform(template, {}, NoManagedPolicies())
    versions = {name: version(name) for name in ("aws-sam-translator", "cfn-lint", "cfn-lint-serverless")}
    json.dump({"versions": versions, "template": output}, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
