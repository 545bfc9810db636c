#!/usr/bin/env bash
# The interpreter of the AWS Lambda platform tests (tests/platform/aws_lambda): Python 3.12 as in Lambda's
# python3.12 runtime, holding AWS's own runtime interface client (awslambdaric) and the boto3 the runtime
# provides, and nothing else: each function must bring every other dependency in its bundle.
#
#   bash scripts/platform/lambda.sh      # creates or refreshes .cache/platform/lambda-py312; prints its python
#
# Cached by a stamp: a second run with the same pins and the same Python does nothing (and needs no network).
# Lambda runs a function as a non-root user. When the Python 3.12 found here lies where other users cannot
# read it (pyenv under a 0700 /root), the venv is made from a hard-linked copy of that installation under
# .cache/platform, which they can read; the tests then set LD_LIBRARY_PATH to its lib/ (Lambda's own
# LD_LIBRARY_PATH starts with /var/lang/lib, its Python's lib/, too). When the checkout itself lies where they
# cannot enter (a clone in a 0700 `mktemp -d` folder, as a CI run may make), the copy and the venv go to a
# folder of ours under /var/tmp instead, and .cache/platform/lambda-py312 is a link to it (the tests resolve it).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/platform/lib/common.sh
umask 022

AWSLAMBDARIC_VERSION=4.2.2  # latest 4.2.x on PyPI
BOTO3_VERSION=1.44.8        # stands in for the SDK the python3.12 runtime provides
venv=.cache/platform/lambda-py312

# Runs "$@" as the unprivileged user Lambda-like runs use (only when we are root: otherwise we already are one).
as_nobody() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
  else
    "$@"
  fi
}

# Where the unprivileged user can reach what it runs: this checkout's .cache/platform, or a folder of ours.
mkdir -p .cache/platform
home=.cache/platform
if ! as_nobody test -x "$(pwd)/.cache/platform"; then
  home="${LAMBDA_PLATFORM_HOME:-/var/tmp/cloudinary-webhook-functions-platform-$(id -u)}"
  mkdir -p "$home"
  [ -O "$home" ] && [ ! -L "$home" ] || fail "$home is not a folder of this user's: remove it, or set LAMBDA_PLATFORM_HOME"
  chmod 755 "$home"
  if [ ! -L "$venv" ] || [ "$(readlink "$venv")" != "$home/lambda-py312" ]; then
    rm -rf "$venv"
    ln -s "$home/lambda-py312" "$venv"
  fi
  echo "lambda.sh: other users cannot enter $(pwd); the Lambda interpreter lives in $home" >&2
fi
stamp="$home/lambda-py312/.stamp"

python312="$(find_python312)" || fail "no Python 3.12 found (tried python3.12 on PATH, ~/.pyenv/versions/3.12*, \
/root/.pyenv/versions/3.12*). Lambda's python3.12 runtime is what these tests reproduce: install Python 3.12 \
(e.g. pyenv install 3.12) and run this again."
base="$("$python312" -c 'import sys; print(sys.base_prefix)')"
version="$("$python312" -c 'import platform; print(platform.python_version())')"

wanted="$( { cat "$0"; echo "$base $version"; } | sha256sum | cut -c1-64)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin/python"
  exit 0
fi

# The unprivileged user must be able to run this Python: if it cannot, use a copy it can read.
if ! as_nobody env -i LD_LIBRARY_PATH="$base/lib" "$base/bin/python3.12" -c 'import encodings, json' \
    >/dev/null 2>&1; then
  copy="$home/cpython-$version"
  if ! [ -x "$copy/bin/python3.12" ]; then
    echo "lambda.sh: $base is not readable by other users; copying it to $copy (hard links where possible)" >&2
    rm -rf "$copy.tmp"
    cp -al "$base" "$copy.tmp" 2>/dev/null || { rm -rf "$copy.tmp"; cp -a "$base" "$copy.tmp"; }
    mv "$copy.tmp" "$copy"
  fi
  base="$(cd "$copy" && pwd)"
  as_nobody env -i LD_LIBRARY_PATH="$base/lib" "$base/bin/python3.12" -c 'import encodings, json' \
    || fail "the copy $copy of Python $version does not run as an unprivileged user"
fi

echo "lambda.sh: creating $venv (Python $version, awslambdaric==$AWSLAMBDARIC_VERSION, boto3==$BOTO3_VERSION)" >&2
rm -rf "$home/lambda-py312"
"$base/bin/python3.12" -m venv "$home/lambda-py312" || fail "python3.12 -m venv failed (Debian: apt-get install python3.12-venv)"
# awslambdaric has a C extension: pip takes its manylinux wheel, or compiles it (gcc, make, cmake) if none fits.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "awslambdaric==$AWSLAMBDARIC_VERSION" "boto3==$BOTO3_VERSION" \
  || fail "pip could not install awslambdaric==$AWSLAMBDARIC_VERSION and boto3==$BOTO3_VERSION into $venv"
chmod -R a+rX "$home/lambda-py312"

as_nobody env -i LD_LIBRARY_PATH="$base/lib" "$home/lambda-py312/bin/python" -c 'import awslambdaric, runtime_client, boto3' \
  || fail "$venv does not import awslambdaric as an unprivileged user"
echo "$wanted" > "$stamp"
echo "$venv/bin/python"
