"""`nox -s bench`: side-by-side timings of dexkit against its baselines, into BENCHMARKS.md."""
