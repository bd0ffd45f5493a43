"""Helpers for tests and benchmarks: a throwaway PostgreSQL server, a live server."""
