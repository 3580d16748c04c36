"""Compatibility package for the original ``src.main`` API."""
