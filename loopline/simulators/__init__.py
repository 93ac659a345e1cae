"""Simulated outside systems for the demo and for tests."""
