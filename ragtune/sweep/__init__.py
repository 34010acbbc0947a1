"""Sweeps: the sweep spec, result tables and plots."""
