"""Evaluation: ranking metrics and dense evaluation over a corpus."""
