#!/usr/bin/env bash
# The SAM tools of the platform tests (tests/platform/sam_netlify), in their own venv, pinned exactly:
#   aws-sam-translator   AWS's SAM transform itself (the version SAM CLI pins), run in-process on template.yaml
#   cfn-lint             what `sam validate --lint` runs (SAM CLI calls cfnlint.api.lint); within SAM CLI's range
#   cfn-lint-serverless  AWS's serverless best-practice rules for cfn-lint (`cfn-lint -a cfn_lint_serverless.rules`)
#
#   bash scripts/platform/sam.sh      # creates or refreshes .cache/platform/sam; prints its python
#
# Cached by a stamp: a second run with the same pins and the same Python does nothing (and needs no network).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/platform/lib/common.sh
umask 022

AWS_SAM_TRANSLATOR_VERSION=1.115.0   # aws-sam-cli 1.170.0 pins aws-sam-translator==1.115.0
CFN_LINT_VERSION=1.58.0              # aws-sam-cli 1.170.0 accepts cfn-lint>=1.52.0,<1.59
CFN_LINT_SERVERLESS_VERSION=0.3.6    # needs cfn-lint>=1.57.0,<2
venv=.cache/platform/sam
stamp="$venv/.stamp"

python_bin="${PYTHON:-python3}"
version="$("$python_bin" -c 'import platform; print(platform.python_version())')" \
  || fail "no $python_bin: install Python 3.10 or newer"
wanted="$( { cat "$0"; echo "$version"; } | sha256sum | cut -c1-64)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin/python"
  exit 0
fi

echo "sam.sh: creating $venv (aws-sam-translator==$AWS_SAM_TRANSLATOR_VERSION, cfn-lint==$CFN_LINT_VERSION," \
  "cfn-lint-serverless==$CFN_LINT_SERVERLESS_VERSION)" >&2
mkdir -p .cache/platform
rm -rf "$venv"
"$python_bin" -m venv "$venv" || fail "$python_bin -m venv failed (Debian: apt-get install python3-venv)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "aws-sam-translator==$AWS_SAM_TRANSLATOR_VERSION" "cfn-lint==$CFN_LINT_VERSION" \
  "cfn-lint-serverless==$CFN_LINT_SERVERLESS_VERSION" \
  || fail "pip could not install the pinned SAM tools into $venv"
"$venv/bin/python" -c 'import samtranslator, cfnlint, cfn_lint_serverless.rules' \
  || fail "$venv does not import samtranslator, cfnlint and cfn_lint_serverless"
echo "$wanted" > "$stamp"
echo "$venv/bin/python"
