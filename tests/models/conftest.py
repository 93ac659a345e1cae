"""Fixtures for the core tests live in tests/conftest.py (shared with ingest and api)."""
