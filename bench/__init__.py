"""Benchmarks: the app over loopback against the project's upstream simulator (``make bench``)."""
