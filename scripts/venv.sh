# Sourced by scripts/*.sh: create or refresh .venv from requirements-dev.txt (only when it changed).
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv || { echo "Could not create .venv: install python3-venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
stamp=.venv/.requirements-stamp
wanted="$(cat requirements.txt requirements-dev.txt functions/*/requirements.txt 2>/dev/null | sha256sum | cut -c1-64)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi
