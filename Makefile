# `make` serves, as `make serve` does; `make help` lists the targets. Each creates or refreshes .venv by itself.
# Only a command-line value changes these (`make serve PORT=8899`), not a PORT left in the environment.
HOST = 127.0.0.1
PORT = 8888

.PHONY: serve test test-fast bench lint help

serve:  ## run every function on http://127.0.0.1:8888 (demo mode when nothing is configured); PORT=8899 HOST=0.0.0.0 to change
	@bash scripts/serve.sh --host '$(HOST)' --port '$(PORT)'

test:  ## lint and run the whole test suite (starts a throwaway PostgreSQL for asset_sync)
	@bash scripts/test.sh

test-fast:  ## the quick loop while editing (< 30 s): no PostgreSQL, bundles, platform tools or robustness suites
	@bash -c 'source scripts/venv.sh && .venv/bin/python -m pytest -q -p no:cacheprovider -n auto -m "not slow and not postgres and not bundle and not platform"'

bench:  ## regenerate BENCHMARKS.md
	@bash scripts/bench.sh

lint:  ## ruff on the whole project
	@bash -c 'source scripts/venv.sh && .venv/bin/ruff check .'

help:  ## list these targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  make %-9s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
