"""Benchmark harness for FastCMS's Server-Sent Events (SPEC section 8): `python -m bench --help`."""
