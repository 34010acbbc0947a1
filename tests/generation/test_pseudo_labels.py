"""Pseudo-labels: min-max over the top list by hand, the hybrid teacher against the hybrid first
stage's own fusion (`weighted_score_fusion`, an independent implementation over run dicts), the
teacher in student units against the formula, source ranks and dense negatives by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.generation.pseudo_labels import HybridTeacher, dense_negatives, minmax_over_top, source_rank
from ragtune.retrieval.fusion import weighted_score_fusion


def test_minmax_over_top_by_hand():
    scores = np.array([[3.0, 1.0, 2.0, 0.0],   # top 2 = {3, 2}: (s - 2) / 1, clipped at 0
                       [0.0, 0.0, 5.0, 0.0],   # positive_only: the list is {5}, a constant list
                       [0.0, 0.0, 0.0, 0.0]])  # positive_only: empty list -> zeros
    out, ranges = minmax_over_top(scores[:1], depth=2)
    np.testing.assert_allclose(out, [[1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ranges, [1.0])
    out, ranges = minmax_over_top(scores, depth=2, positive_only=True)
    np.testing.assert_allclose(out, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ranges, [1.0, 0.0, 0.0])
    out, _ = minmax_over_top(np.array([[4.0, 2.0, 3.0, 1.0]]), depth=3)  # top 3 = {4, 3, 2}
    np.testing.assert_allclose(out, [[1.0, 0.0, 0.5, 0.0]])


def run_of(scores: np.ndarray, depth: int, positive_only: bool) -> dict[str, dict[str, float]]:
    run = {}
    for i, row in enumerate(scores):
        top = np.argsort(-row, kind="stable")[:depth]
        run[f"q{i}"] = {f"d{j}": float(row[j]) for j in top if not positive_only or row[j] > 0}
    return {q: docs for q, docs in run.items() if docs}


@pytest.mark.parametrize("weight", [0.3, 0.5, 1.0])
def test_hybrid_teacher_is_the_hybrid_first_stage_score(weight):
    rng = np.random.default_rng(0)
    bm25 = np.where(rng.random((6, 40)) < 0.4, rng.random((6, 40)) * 10, 0.0)  # most docs share no term
    bm25[5] = 0.0  # a query sharing no term with any document
    dense = rng.uniform(-0.2, 0.9, (6, 40))
    depth = 8
    teacher = HybridTeacher.from_scores(bm25, dense, weight, depth)
    fused = weighted_score_fusion([run_of(bm25, depth, True), run_of(dense, depth, False)], [1 - weight, weight])
    for i in range(6):
        got = fused[f"q{i}"]
        for j in range(40):
            expected = got.get(f"d{j}", 0.0)  # a document neither run returned scores 0 there too
            assert teacher.hybrid[i, j] == pytest.approx(expected, abs=1e-12)


def test_teacher_in_student_units_adds_bm25_to_the_students_own_margins():
    """t = h * range / (w * tau): with no BM25 signal, t's margins are the zero-shot student's cos / tau."""
    dense = np.array([[0.9, 0.5, 0.7, 0.1, 0.6]])
    teacher = HybridTeacher.from_scores(np.zeros_like(dense), dense, weight=0.5, depth=4)
    cols = np.array([0, 1, 2, 4])  # all in the dense top 4 (0.9, 0.7, 0.6, 0.5)
    t = teacher.student_units(np.zeros(4, dtype=int), cols, weight=0.5, temperature=0.05)
    np.testing.assert_allclose(t[0] - t[1:], (dense[0, 0] - dense[0, cols[1:]]) / 0.05)
    bm25 = np.array([[0.0, 2.0, 0.0, 0.0, 1.0]])  # list {2, 1}: n_bm25 = [0, 1, 0, 0, 0]
    teacher = HybridTeacher.from_scores(bm25, dense, weight=0.5, depth=4)
    t = teacher.student_units(np.zeros(3, dtype=int), np.array([0, 1, 2]), weight=0.5, temperature=0.05)
    # dense list {0.9, 0.7, 0.6, 0.5}: n_dense(d0, d1, d2) = 1, 0, 0.5; h = 0.5 * n_bm25 + 0.5 * n_dense
    # = 0.5, 0.5, 0.25; times the dense range 0.4 / (0.5 * 0.05)
    np.testing.assert_allclose(t, [0.5 * 16, 0.5 * 16, 0.25 * 16])
    with pytest.raises(ValueError, match="dense share"):
        teacher.student_units(np.zeros(1, dtype=int), np.array([0]), weight=0.0, temperature=0.05)


def test_source_rank_counts_strictly_higher_scores():
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [0.9, 0.1, 0.3, 0.3]])
    np.testing.assert_array_equal(source_rank(scores, np.array([2, 3])), [1, 2])  # a tie counts for the source


def test_dense_negatives_come_from_the_top_without_the_source_and_are_seeded_per_query():
    dense = np.array([[0.1, 0.9, 0.8, 0.7, 0.6, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    negs = dense_negatives(dense, np.array([1, 5]), depth=3, k=2, seed=0, qids=["a", "b"])
    assert all(len(n) == 2 and len(set(n)) == 2 for n in negs)
    assert set(negs[0]) <= {2, 3, 4} and set(negs[1]) <= {0, 1, 2}  # top 3 once the source is dropped
    assert negs[0] == sorted(negs[0], key=lambda j: -dense[0, j])  # rank order
    assert dense_negatives(dense[1:], np.array([5]), 3, 2, 0, ["b"]) == negs[1:]  # independent of other queries
    assert dense_negatives(dense, np.array([1, 5]), depth=3, k=5, seed=0, qids=["a", "b"])[0] == [2, 3, 4]


def test_top_lists_rank_by_the_hybrid_and_leave_out_the_source():
    dense = np.array([[0.9, 0.5, 0.7, 0.1, 0.6]])
    bm25 = np.array([[0.0, 2.0, 0.0, 0.0, 1.0]])
    teacher = HybridTeacher.from_scores(bm25, dense, weight=0.5, depth=4)
    # h = 0.5 n_bm25 + 0.5 n_dense = [0.5, 0.5, 0.25, 0, 0.125]; ties keep column order
    cols, scores = teacher.top_lists(3, weight=0.5, temperature=0.05)
    np.testing.assert_array_equal(cols, [[0, 1, 2]])
    np.testing.assert_allclose(scores, [[0.5 * 16, 0.5 * 16, 0.25 * 16]])  # h * 0.4 / (0.5 * 0.05)
    cols, scores = teacher.top_lists(3, weight=0.5, temperature=0.05, exclude=np.array([1]))
    np.testing.assert_array_equal(cols, [[0, 2, 4]])
    np.testing.assert_allclose(scores, [[8.0, 4.0, 2.0]])
    cols, _ = teacher.top_lists(10, weight=0.5, temperature=0.05, exclude=np.array([1]))  # k past the corpus
    assert sorted(cols[0].tolist()) == [0, 2, 3, 4]
