# Sourced by scripts/*.sh: create or refresh .venv (the project installed editable, plus the dev tools),
# only when the requirements changed.
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv || { echo "Could not create .venv: install python3-venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
stamp=.venv/.requirements-stamp
wanted="$(cat pyproject.toml requirements.txt requirements-dev.txt functions/*/requirements.txt 2>/dev/null | sha256sum | cut -c1-64)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -e . -r requirements-dev.txt \
      >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "venv.sh: pip install failed (log above)" >&2
    exit 1
  fi
  echo "$wanted" > "$stamp"
fi
