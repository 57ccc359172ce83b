"""clerk-sync benchmarks: `make bench` (python -m bench); see docs/performance.md."""
