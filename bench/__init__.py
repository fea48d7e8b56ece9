"""Benchmark harness for FastCMS's Server-Sent Events against its performance targets: `python -m bench --help`."""
