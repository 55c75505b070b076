# Benchmarks (need root, a running Open vSwitch and .venv: scripts/setup.sh).
#   make bench        full run, updates bench/results.md (several minutes)
#   make bench-quick  tiny sizes, checks the harness (< 60 s), bench/results-quick.md

.PHONY: bench bench-quick

bench:
	bash bench/run.sh

bench-quick:
	bash bench/run.sh --quick
