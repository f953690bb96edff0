"""Benchmarks run by hand (never by `make test`): their commands and figures are in docs/benchmarks.md."""
