"""A grounded-answer task built from a BEIR dataset with qrels (SciFact), measurable without gold answers.

Each example shows a claim and k passages numbered [1]..[k] in shuffled order: the claim's
gold passages (qrels) mixed with hard negatives from a first stage (BM25 or dense), or, for
a seeded share of the claims, negatives only. The target is the gold id(s), e.g. "[2]" or
"[1] [3]", or exactly ABSTAIN. Everything is a function of (seed, qid): rebuilding gives the
same examples.

Metrics over parsed predictions (`parse_answer`):
    citation_accuracy     = #answerable with predicted id set == gold id set / #answerable
    abstention_precision  = #(predicted abstain and no gold shown) / #predicted abstain  (0 if none)
    abstention_recall     = #(predicted abstain and no gold shown) / #no-gold examples
    exact_match           = #(stripped output == target string) / #examples
    valid_format          = share of outputs that are ids only or the abstention sentence

Calibrated abstention (`calibrated_answers`, `choose_abstain_bias`): greedy decoding with a bias
b added to the logit of the abstention sentence's first token at the first answer position. With
    margin = logit(abstention's first token) - max logit of every other token   (first position)
greedy abstains exactly when margin + b > 0, and otherwise starts with the best other token; so
one answer forced to abstain and one with the abstention token barred give the greedy answer
for every b. b = 0 is plain greedy decoding.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ragtune.data.beir import BeirDataset
from ragtune.data.instruct import InstructRecord

ABSTAIN = "Information not available in the provided context."
INSTRUCTION = ("Which passages support the claim? Answer only with their ids, e.g. [2] or [1] [3]. "
               f"If no passage supports it, answer exactly: {ABSTAIN}")
_ID = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class GroundedExample:
    qid: str
    claim: str
    passages: tuple[str, ...]
    doc_ids: tuple[str, ...]  # corpus ids behind [1]..[k]
    gold: tuple[int, ...]  # 1-based ids of the gold passages shown; () -> abstain

    @property
    def target(self) -> str:
        return " ".join(f"[{i}]" for i in self.gold) if self.gold else ABSTAIN

    def record(self) -> InstructRecord:
        return InstructRecord(query=f"Claim: {self.claim}", contexts=self.passages, answer=self.target, id=self.qid)


def cut_to_tokens(tokenizer, text: str, budget: int) -> str:
    """The first `budget` tokens of text, decoded (so every passage costs the prompt the same)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:budget]).strip() if len(ids) > budget else text.strip()


def build_examples(dataset: BeirDataset, candidates: Mapping[str, Mapping[str, float]], tokenizer, *, k: int,
                   passage_tokens: int, no_gold_share: float, seed: int, qids: list[str] | None = None,
                   max_examples: int = 0, max_gold: int = 2, negatives_depth: int = 10,
                   paired: bool = False) -> list[GroundedExample]:
    """Grounded examples for `qids` (default: every query with qrels), deterministic in `seed`.

    candidates[qid]: a ranked first-stage run (best first); gold docs in it are skipped, and the
    negatives are sampled from the top `negatives_depth` of what remains (hard, not only the top),
    topped up with random non-gold corpus docs when the run is shorter than needed.
    The seeded shuffle of qids is cut to max_examples first, and exactly round(share * n) of
    the kept claims get no gold passage.

    paired=True (for training): every kept claim gives two examples that differ in one slot
    only: the gold-shown one, then its twin where each gold passage is replaced, in place, by
    one more negative. The claim and the other passages are then no cue to the answer, so the
    loss can only be lowered by reading the passages (no_gold_share is not used: half abstain).
    """
    if not 0.0 <= no_gold_share <= 1.0:
        raise ValueError(f"no_gold_share must be in [0, 1], got {no_gold_share}")
    if k < 1 or max_gold < 1 or max_gold > k:
        raise ValueError(f"need 1 <= max_gold <= k, got max_gold={max_gold}, k={k}")
    order = sorted(qids if qids is not None else dataset.qrels)
    random.Random(seed).shuffle(order)
    if max_examples > 0:
        order = order[:max_examples]
    n_abstain = round(no_gold_share * len(order))
    examples = []
    for n, qid in enumerate(order):
        rng = random.Random(f"{seed}-{qid}")
        gold_docs = sorted(d for d, grade in dataset.qrels.get(qid, {}).items() if grade > 0)
        if not gold_docs:
            raise ValueError(f"query {qid} has no positive qrels; grounded examples need them")
        shown_gold = gold_docs[:max_gold] if paired or n >= n_abstain else []
        pool = [d for d in candidates.get(qid, {}) if d not in set(gold_docs)][:max(negatives_depth, k)]
        need = k - len(shown_gold)
        twin = len(shown_gold) if paired else 0  # the negatives that take the gold slots in the twin
        if len(pool) < need + twin:  # BM25 scores only docs sharing a term: top up with random corpus docs
            rest = sorted(set(dataset.corpus) - set(gold_docs) - set(pool))
            if len(rest) < need + twin - len(pool):
                raise ValueError(f"query {qid}: the corpus has too few non-gold documents for k={k}")
            pool += rng.sample(rest, need + twin - len(pool))
        negatives = rng.sample(pool, need + twin)
        docs = shown_gold + negatives[:need]
        rng.shuffle(docs)
        examples.append(_example(dataset, tokenizer, qid, docs, shown_gold, passage_tokens))
        if paired:
            fill = iter(negatives[need:])
            examples.append(_example(dataset, tokenizer, qid, [next(fill) if d in shown_gold else d for d in docs],
                                     [], passage_tokens))
    return examples


def _example(dataset: BeirDataset, tokenizer, qid: str, docs: list[str], shown_gold: list[str],
             passage_tokens: int) -> GroundedExample:
    passages = tuple(cut_to_tokens(tokenizer, dataset.corpus[d].full_text(), passage_tokens) for d in docs)
    gold = tuple(sorted(i + 1 for i, d in enumerate(docs) if d in shown_gold))
    return GroundedExample(qid, dataset.queries[qid], passages, tuple(docs), gold)


@dataclass(frozen=True)
class Parsed:
    abstain: bool
    ids: frozenset[int]
    valid: bool  # ids only, or the abstention sentence


def parse_answer(text: str) -> Parsed:
    """'[2] [3]' -> ids {2, 3}; a text starting with the abstention sentence -> abstain.

    Lenient on case, a missing final period and surrounding whitespace; anything else that
    carries ids counts by its ids but is marked invalid.
    """
    stripped = text.strip()
    if stripped.lower().rstrip(".").startswith(ABSTAIN.lower().rstrip(".")):
        return Parsed(True, frozenset(), stripped.rstrip(".") == ABSTAIN.rstrip("."))
    ids = frozenset(int(m) for m in _ID.findall(stripped))
    valid = re.fullmatch(r"(\[\d+\][\s,]*)+", stripped) is not None
    return Parsed(False, ids, valid)


def grounded_metrics(examples: list[GroundedExample], outputs: list[str]) -> dict[str, float]:
    """Citation accuracy, abstention precision/recall, exact match, valid format (see module doc)."""
    if len(examples) != len(outputs):
        raise ValueError(f"{len(examples)} examples but {len(outputs)} outputs")
    parsed = [parse_answer(o) for o in outputs]
    answerable = [(e, p) for e, p in zip(examples, parsed, strict=True) if e.gold]
    no_gold = len(examples) - len(answerable)
    predicted_abstain = sum(p.abstain for p in parsed)
    correct_abstain = sum(p.abstain for e, p in zip(examples, parsed, strict=True) if not e.gold)
    return {
        "citation_accuracy": sum(not p.abstain and p.ids == frozenset(e.gold) for e, p in answerable)
        / max(1, len(answerable)),
        "abstention_precision": correct_abstain / predicted_abstain if predicted_abstain else 0.0,
        "abstention_recall": correct_abstain / no_gold if no_gold else 0.0,
        "exact_match": sum(o.strip() == e.target for e, o in zip(examples, outputs, strict=True))
        / max(1, len(examples)),
        "valid_format": sum(p.valid for p in parsed) / max(1, len(parsed)),
    }


def calibrated_answers(cite: list[str], abstain: list[str], margins, bias: float) -> list[str]:
    """Greedy answers under abstention bias `bias` (module doc): the abstaining answer where
    margin + bias > 0, else the answer decoded with the abstention token barred."""
    if not len(cite) == len(abstain) == len(margins):
        raise ValueError(f"{len(cite)} citing answers, {len(abstain)} abstaining, {len(margins)} margins")
    return [a if m + bias > 0 else c for c, a, m in zip(cite, abstain, margins, strict=True)]


def choose_abstain_bias(examples: list[GroundedExample], cite: list[str], abstain: list[str], margins) -> float:
    """The bias with the best exact match on `examples` (dev claims); ties go to the smallest |bias|.

    The answers change only where -bias crosses a margin, so one bias per gap between sorted
    margins (its midpoint), one below and one above them all, and 0 cover every outcome.
    """
    edges = sorted(set(float(m) for m in margins))
    if not edges:
        return 0.0
    candidates = {0.0, -(edges[0] - 1.0), -(edges[-1] + 1.0)} | {-(a + b) / 2 for a, b in pairwise(edges)}
    score = {b: grounded_metrics(examples, calibrated_answers(cite, abstain, margins, b))["exact_match"]
             for b in candidates}
    return min(candidates, key=lambda b: (-score[b], abs(b)))


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties count half."""
    if not len(positive) or not len(negative):
        raise ValueError(f"AUC needs both classes: {len(positive)} positive, {len(negative)} negative scores")
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * ties)
