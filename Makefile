# The two commands of the quick start. Each creates or refreshes .venv by itself.
.PHONY: serve test bench lint

serve:  ## run every function on http://127.0.0.1:8888 (demo mode when nothing is configured)
	@bash scripts/serve.sh

test:  ## lint and run the whole test suite (starts a throwaway PostgreSQL for asset_sync)
	@bash scripts/test.sh

bench:  ## regenerate BENCHMARKS.md
	@bash scripts/bench.sh

lint:
	@bash -c 'source scripts/venv.sh && .venv/bin/ruff check .'
