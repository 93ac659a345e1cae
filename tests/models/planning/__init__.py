"""Tests of the planner (``models.planning``)."""
