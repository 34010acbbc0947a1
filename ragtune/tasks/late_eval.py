"""Evaluate a saved late-interaction folder (model.name) without training: exact MaxSim search over
the corpus, MaxSim reranking of late.rerank_first_stage's top late.rerank_n, and that first stage
alone (its dense side: rerank.first_stage_model). See ragtune/tasks/late_interaction.py."""

from ragtune.tasks.late_interaction import build_evaluation as build

__all__ = ["build"]
