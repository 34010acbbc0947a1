"""Metrics against pytrec_eval (an independent C implementation of trec_eval) and by hand."""

import math
import random

import pytest

from ragtune.eval.metrics import evaluate, per_query, rank_docs

pytrec_eval = pytest.importorskip("pytrec_eval")


def _random_case(seed: int, graded: bool):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(40)]
    qrels, run = {}, {}
    for q in range(25):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 8))
        qrels[qid] = {d: (rng.randint(1, 3) if graded else 1) for d in judged}
        qrels[qid][rng.choice(docs)] = 0  # a judged non-relevant doc
        if not any(g >= 1 for g in qrels[qid].values()):
            qrels[qid][judged[0]] = 1
        # Scores drawn from a few values so that many ties occur.
        run[qid] = {d: float(rng.randint(0, 5)) for d in rng.sample(docs, rng.randint(5, 30))}
    return run, qrels


def _pytrec(run, qrels, k):
    truncated = {q: {d: run[q][d] for d in rank_docs(run[q], k)} for q in run}
    measures = {f"ndcg_cut_{k}", f"recall_{k}", f"P_{k}", f"map_cut_{k}"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)
    names = {"ndcg": f"ndcg_cut_{k}", "recall": f"recall_{k}", "precision": f"P_{k}", "map": f"map_cut_{k}"}
    out = {f"{m}@{k}": sum(full[q][n] for q in full) / len(full) for m, n in names.items()}
    out[f"mrr@{k}"] = sum(rr[q]["recip_rank"] for q in rr) / len(rr)
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("graded", [False, True])
def test_matches_pytrec_eval_with_ties_and_grades(seed, graded):
    run, qrels = _random_case(seed, graded)
    ours = evaluate(run, qrels, k_values=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        for key, value in _pytrec(run, qrels, k).items():
            assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_hand_computed_single_query():
    # Ranking: a (rel 2), b (0), c (rel 1); 3 relevant docs in qrels (a, c, z).
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    qrels = {"q": {"a": 2, "c": 1, "z": 1}}
    m = evaluate(run, qrels, k_values=(3,))
    dcg = 2 / math.log2(2) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["mrr@3"] == pytest.approx(1.0)
    assert m["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_ties_broken_by_docid_descending():
    assert rank_docs({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]


def test_query_missing_from_run_scores_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    m = evaluate({"q1": {"a": 1.0}}, qrels, k_values=(10,))
    assert m["recall@10"] == pytest.approx(0.5)
    assert per_query({}, qrels, k_values=(10,))["q2"]["ndcg@10"] == 0.0
