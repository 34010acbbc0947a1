"""Retrieval losses as plain functions of embeddings or scores.

Batch layout (THE definition, used by collate, models and losses alike):
``Q`` queries, and documents grouped per query as ``[pos, neg_1 .. neg_k]`` so
``d_emb`` is ``(Q * G, H)`` with ``group_size = G = 1 + k`` and the positive of
query ``i`` at row ``i * G`` (see :func:`group_targets`). Score-based losses take
``scores`` of shape ``(Q, G)`` in the same layout: column 0 is the positive.
Scores are similarities (dot / cosine): higher means more relevant.

Adding a loss = one function (formula in the docstring) + one ``register_loss(name, fn, kind)``.
Every training task calls it through ``compute_loss``, by kind:

- ``"embedding"``: ``fn(q_emb (Q, H), d_emb (Q*G, H), group_size=G, **kw)``
- ``"triplet"``:   ``fn(q_emb (Q, H), pos_emb (Q, H), neg_emb (Q, H) | (Q, K, H), **kw)``
- ``"score"``:     ``fn(scores (Q, G), **kw)``
- ``"distill"``:   ``fn(student_scores (Q, G), teacher_scores (Q, G), **kw)``
- ``"corpus"``:    ``fn(student_scores (Q, N) over the whole corpus, candidates (Q, K), teacher_scores (Q, K), **kw)``
  (a query tower against a frozen index, ragtune/tasks/query_tower.py: no group layout)

``kw`` holds every ``LossConfig`` field the function names as a parameter, so a new knob is a
``LossConfig`` field of the parameter's name. A loss that names ``target_offset`` sees the
documents of every process (gathered) under DDP; one that names ``known_positives`` gets the
(Q, D) mask of documents labelled relevant to each query; an embedding loss that names
``teacher`` gets the (Q, G) teacher scores too.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ragtune.config import ConfigError
from ragtune.retrieval.maxsim import maxsim, maxsim_grouped
from ragtune.training.distributed import gather_with_grad, local_target_offset


def group_targets(num_queries: int, group_size: int, device: torch.device | str | None = None) -> Tensor:
    """Row of each query's positive in the grouped ``d_emb``: ``arange(Q) * G``, (Q,)."""
    return torch.arange(num_queries, device=device) * group_size


def similarity(q_emb: Tensor, d_emb: Tensor) -> Tensor:
    """Score of every query with every document, ``(Q, D)``: the dot product of single vectors
    ``(Q, H), (D, H)``, or MaxSim of multi-vector embeddings ``(Q, Tq, h), (D, Td, h)``
    (late interaction; zero rows are padding, see ``ragtune.retrieval.maxsim``)."""
    return maxsim(q_emb, d_emb) if q_emb.dim() == 3 else q_emb @ d_emb.T


def grouped_scores(q_emb: Tensor, d_emb: Tensor, group_size: int) -> Tensor:
    """Score of each query with its own group: ``(Q, H), (Q*G, H) -> (Q, G)`` (dot product), or
    ``(Q, Tq, h), (Q*G, Td, h) -> (Q, G)`` (MaxSim).

    Bridges bi-encoder and late-interaction embeddings to the score losses (e.g. ``margin_mse``).
    """
    if q_emb.dim() == 3:
        return maxsim_grouped(q_emb, d_emb, group_size)
    d = d_emb.reshape(q_emb.shape[0], group_size, -1)  # (Q, G, H)
    return torch.einsum("qh,qgh->qg", q_emb, d)


def _pos_neg(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Split group-layout scores (Q, G) into positives (Q, 1) and negatives (Q, G-1)."""
    return scores[:, :1], scores[:, 1:]


# --------------------------------------------------------------------------- #
# Embedding losses
# --------------------------------------------------------------------------- #


def info_nce(
    q_emb: Tensor,
    d_emb: Tensor,
    temperature: float | Tensor = 0.05,
    group_size: int = 1,
    symmetric: bool = False,
    target_offset: int = 0,
    known_positives: Tensor | None = None,
) -> Tensor:
    """InfoNCE with in-batch negatives (van den Oord et al. 2018; DPR, Karpukhin et al. 2020).

    ``s_ij = sim(q_i, d_j) / tau`` (dot product, or MaxSim for multi-vector embeddings) over
    ALL ``D`` docs in the batch (every query's positive and hard negatives), target
    ``t_i = i * G + target_offset``::

        L_qd = -1/Q sum_i log( exp(s_{i,t_i}) / sum_{j not in K_i} exp(s_ij) )

    ``known_positives`` (Q, D) bool marks ``K_i``: docs of the batch labelled relevant to
    query i other than its target (another query's positive or negative that the qrels call
    relevant to i, or i's own second positive). They leave the denominator, so a known
    positive is never pushed away as a negative; None (or all False) is plain InfoNCE.

    ``symmetric=True`` adds the doc->query direction over positives only
    (positive ``p_i = d_{t_i}`` against all ``Q`` queries, CLIP-style) and returns
    ``(L_qd + L_dq) / 2`` with ``L_dq = -1/Q sum_i log softmax_k(p_i . q_k / tau)_i``.

    Shapes: q_emb (Q, H), d_emb (D, H) with D >= Q * G (or (Q, Tq, h), (D, Td, h) for
    MaxSim). The loss uses raw dot products: normalise the embeddings first for cosine. ``temperature`` may be a
    float or a 0-dim tensor (learnable, living on the model).
    ``target_offset`` is for gathered negatives under DDP: local queries against
    all ranks' docs, offset = ``rank * Q_local * G`` (see ``ragtune.training.distributed``).
    With an offset, ``symmetric`` contrasts positives with the passed ``q_emb``
    only; for the exact global symmetric loss gather q_emb too and use offset 0.
    """
    targets = group_targets(q_emb.shape[0], group_size, q_emb.device) + target_offset  # (Q,)
    logits = similarity(q_emb, d_emb) / temperature  # (Q, D)
    rows = torch.arange(q_emb.shape[0], device=q_emb.device)
    if known_positives is not None:
        known_positives = known_positives.clone()
        known_positives[rows, targets] = False  # the target always stays
        logits = logits.masked_fill(known_positives, float("-inf"))
    loss = F.cross_entropy(logits, targets)
    if not symmetric:
        return loss
    pos = d_emb[targets]  # (Q, H) or (Q, Td, h)
    logits_dq = similarity(q_emb, pos).T / temperature  # (Q, Q): row i = positive p_i against every query
    if known_positives is not None:  # p_i relevant to q_k (k != i): not a negative of p_i either
        logits_dq = logits_dq.masked_fill(known_positives[:, targets].T, float("-inf"))
    loss_dq = F.cross_entropy(logits_dq, rows)
    return (loss + loss_dq) / 2


def triplet(
    q_emb: Tensor,
    pos_emb: Tensor,
    neg_emb: Tensor,
    margin: float = 1.0,
    distance: str = "cosine",
) -> Tensor:
    """Triplet margin loss (Schroff et al. 2015, FaceNet; SBERT, Reimers & Gurevych 2019).

        L = mean max(0, d(q, p) - d(q, n) + margin)

    with ``d = 1 - cos(a, b)`` (``"cosine"``) or ``||a - b||_2`` (``"euclidean"``).
    Shapes: q_emb (Q, H), pos_emb (Q, H), neg_emb (Q, H) or (Q, K, H) for K
    negatives per query (mean over all Q*K triplets).
    """
    if neg_emb.dim() == 3:  # broadcast q and p against K negatives
        q_emb, pos_emb = q_emb.unsqueeze(1), pos_emb.unsqueeze(1)  # (Q, 1, H)
    if distance == "cosine":
        d_pos = 1 - F.cosine_similarity(q_emb, pos_emb, dim=-1)
        d_neg = 1 - F.cosine_similarity(q_emb, neg_emb, dim=-1)
    elif distance == "euclidean":
        d_pos = torch.linalg.vector_norm(q_emb - pos_emb, dim=-1)
        d_neg = torch.linalg.vector_norm(q_emb - neg_emb, dim=-1)
    else:
        raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}")
    return F.relu(d_pos - d_neg + margin).mean()


def contrastive_margin(q_emb: Tensor, d_emb: Tensor, group_size: int, margin: float = 0.2) -> Tensor:
    """Margin ranking over each query's own hard negatives (no in-batch negatives).

        L = 1/Q sum_i sum_{n in group i, n != pos} max(0, m - s(q_i, d+_i) + s(q_i, d_n))

    with ``s`` the dot product. Shapes: q_emb (Q, H), d_emb (Q*G, H).
    Note the sum over negatives (vs. ``pairwise_hinge``'s mean over pairs).
    """
    pos, neg = _pos_neg(grouped_scores(q_emb, d_emb, group_size))  # (Q, 1), (Q, G-1)
    return F.relu(margin - pos + neg).sum(dim=1).mean()


# --------------------------------------------------------------------------- #
# Score losses (cross-encoders, or bi-encoder scores via grouped_scores)
# --------------------------------------------------------------------------- #


def pointwise_bce(scores: Tensor, labels: Tensor | None = None) -> Tensor:
    """Binary cross-entropy on logits (monoBERT, Nogueira & Cho 2019).

        L = -mean[ y log sigmoid(f) + (1 - y) log(1 - sigmoid(f)) ]

    ``scores`` any shape with ``labels`` in [0, 1] of the same shape; without
    labels, ``scores`` is (Q, G) in group layout (column 0 = 1, the rest = 0).
    """
    if labels is None:
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))


def pairwise_hinge(scores: Tensor, margin: float = 1.0) -> Tensor:
    """Pairwise hinge (Herbrich et al. 2000, RankSVM), mean over the Q*(G-1) pairs.

        L = mean_{i, n} max(0, margin - f(q_i, d+_i) + f(q_i, d_n))

    Shapes: scores (Q, G), column 0 = positive.
    """
    pos, neg = _pos_neg(scores)
    return F.relu(margin - pos + neg).mean()


def ranknet(scores: Tensor) -> Tensor:
    """RankNet pairwise logistic loss (Burges et al. 2005), mean over Q*(G-1) pairs.

        L = mean_{i, n} log(1 + exp(-(f(q_i, d+_i) - f(q_i, d_n))))

    Shapes: scores (Q, G), column 0 = positive. Softplus keeps it stable.
    """
    pos, neg = _pos_neg(scores)
    return F.softplus(neg - pos).mean()


def listwise_ce(scores: Tensor) -> Tensor:
    """Softmax cross-entropy over each group (ListNet-style top-1; Cao et al. 2007).

        L = -1/Q sum_i log( exp(f_{i0}) / sum_g exp(f_{ig}) )

    Shapes: scores (Q, G), target column 0. Scale by 1/tau before calling if needed.
    """
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))


def margin_mse(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """Margin-MSE distillation (Hofstätter et al. 2020, arXiv:2010.02666).

        L = mean_{i, n} ((s_{i0} - s_{in}) - (t_{i0} - t_{in}))^2

    Shapes: student_scores, teacher_scores (Q, G), column 0 = positive; mean over
    the Q*(G-1) (pos, neg) margins. Teacher scores carry no gradient.
    """
    s_pos, s_neg = _pos_neg(student_scores)
    t_pos, t_neg = _pos_neg(teacher_scores.detach())
    return F.mse_loss(s_pos - s_neg, t_pos - t_neg)


def kl_distill(student_scores: Tensor, teacher_scores: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) over each group's softmax (Hinton et al. 2015; RocketQAv2).

        p = softmax(t_i / T),  q = softmax(s_i / T)
        L = 1/Q sum_i sum_g p_g (log p_g - log q_g)

    Shapes: (Q, G). No T^2 factor: multiply the result by T**2 to keep gradient
    magnitudes comparable across temperatures (Hinton's convention).
    """
    log_q = F.log_softmax(student_scores / temperature, dim=-1)
    log_p = F.log_softmax(teacher_scores.detach() / temperature, dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def info_nce_kl_distill(
    q_emb: Tensor,
    d_emb: Tensor,
    teacher: Tensor,
    temperature: float | Tensor = 0.05,
    group_size: int = 2,
    distill_weight: float = 1.0,
    target_offset: int = 0,
    known_positives: Tensor | None = None,
) -> Tensor:
    """InfoNCE over the batch plus KL distillation over each query's own group (RocketQAv2-style):

        L = info_nce(q, d; tau) + lambda * 1/Q sum_i KL(softmax(t_i) || softmax(s_i)),
        s_ig = sim(q_i, d_ig) / tau  over query i's group [pos, neg_1..neg_k]

    The contrastive term keeps every in-batch document in place; the teacher's scores t (Q, G),
    in the student's units, say how far apart the group's documents should be, so a mined
    negative the teacher scores near the positive is no longer pushed away as hard. lambda =
    loss.distill_weight. Under DDP (``target_offset``) d_emb holds every process's documents and
    the local groups start at row ``target_offset``.
    """
    contrast = info_nce(q_emb, d_emb, temperature, group_size, target_offset=target_offset,
                        known_positives=known_positives)
    local = d_emb[target_offset:target_offset + q_emb.shape[0] * group_size]
    student = grouped_scores(q_emb, local, group_size) / temperature  # (Q, G)
    return contrast + distill_weight * kl_distill(student, teacher)


def corpus_kl_distill(student_scores: Tensor, candidates: Tensor, teacher_scores: Tensor) -> Tensor:
    """Listwise distillation of a teacher's candidate list into a softmax over the whole corpus:

        p_i = softmax(t_i) over C_i,  log q_i = log_softmax(s_i) over all N documents
        L = 1/Q sum_i sum_{d in C_i} p_id (log p_id - log q_id)

    student_scores (Q, N) (cos / tau), candidates (Q, K) corpus columns C_i, teacher_scores (Q, K)
    in the student's units. This is KL(p || q) with p zero outside C_i, so the student is also
    taught to keep every other document below the list. A teacher whose scores clip to a flat
    floor outside its list (min-max normalisation) must not be spread over the corpus instead:
    that floor, times N, would hold most of its mass. GPL (Wang et al. 2022) distils a list the
    same way with MarginMSE over pairs; this is the listwise form (RocketQAv2, Ren et al. 2021).
    """
    log_q = F.log_softmax(student_scores, dim=-1).gather(1, candidates)  # (Q, K)
    log_p = F.log_softmax(teacher_scores.detach(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


LossKind = Literal["embedding", "triplet", "score", "distill", "corpus"]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its function and how `compute_loss` calls it (module docstring)."""

    fn: Callable[..., Tensor]
    kind: LossKind

    @property
    def params(self) -> set[str]:
        return set(inspect.signature(self.fn).parameters)

    @property
    def gathers(self) -> bool:
        """It scores local queries against every process's documents (it takes `target_offset`)."""
        return "target_offset" in self.params


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, fn: Callable[..., Tensor], kind: LossKind) -> None:
    LOSSES[name] = LossSpec(fn, kind)


for _name, _fn, _kind in [
    ("info_nce", info_nce, "embedding"), ("triplet", triplet, "triplet"),
    ("contrastive_margin", contrastive_margin, "embedding"), ("pointwise_bce", pointwise_bce, "score"),
    ("pairwise_hinge", pairwise_hinge, "score"), ("ranknet", ranknet, "score"),
    ("listwise_ce", listwise_ce, "score"), ("margin_mse", margin_mse, "distill"), ("kl_distill", kl_distill, "distill"),
    ("info_nce_kl_distill", info_nce_kl_distill, "embedding"), ("corpus_kl_distill", corpus_kl_distill, "corpus"),
]:
    register_loss(_name, _fn, _kind)


def loss_spec(name: str, kinds: Iterable[str] | None = None, task: str = "") -> LossSpec:
    """The registered loss `name`; a ConfigError names the closest one, or the losses `task` can call."""
    if name not in LOSSES:
        close = difflib.get_close_matches(name, sorted(LOSSES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"loss.name='{name}' is not registered{hint} (known: {sorted(LOSSES)})")
    spec = LOSSES[name]
    if kinds is not None and spec.kind not in set(kinds):
        usable = sorted(n for n, s in LOSSES.items() if s.kind in set(kinds))
        raise ConfigError(f"loss.name='{name}' is a {spec.kind} loss, which the {task} task cannot call; "
                          f"it trains with {usable}")
    return spec


def loss_kwargs(spec: LossSpec, loss_cfg) -> dict:
    """Every LossConfig field the loss names as a parameter (margin, symmetric, tau_plus, ...).

    The temperature is left out: the model owns it (it may be learned) and `compute_loss` passes it."""
    return {f.name: getattr(loss_cfg, f.name) for f in fields(loss_cfg)
            if f.name in spec.params and f.name != "temperature"}


def compute_loss(loss_cfg, *, group_size: int, q_emb: Tensor | None = None, d_emb: Tensor | None = None,
                 scores: Tensor | None = None, temperature: float | Tensor = 1.0, teacher: Tensor | None = None,
                 known_positives: Callable[[bool], Tensor] | None = None, gather: bool = False,
                 candidates: Tensor | None = None) -> Tensor:
    """The one loss dispatcher of every training task: `loss_cfg.name`'s function, called by its kind.

    Embeddings (q_emb (Q, H), d_emb (Q*G, H) grouped [pos, neg..] per query) serve every kind:
    score and distill losses then see ``scores = q . d / temperature`` (Q, G). Multi-vector
    embeddings (Q, Tq, h), (Q*G, Td, h) serve every kind but triplet, with MaxSim for the dot. A cross-encoder
    passes `scores` (Q, G) itself, which serve score and distill losses. `teacher` (Q, G): the
    distill target. `known_positives(gathered) -> (Q, D) bool`: the relevance mask over the local
    or the gathered documents, for losses that take one. `gather`: under DDP, a loss that takes
    `target_offset` scores local queries against every process's documents. A corpus loss takes
    `scores` (Q, N) over the whole corpus, `candidates` (Q, K) and `teacher` (Q, K).
    """
    spec = loss_spec(loss_cfg.name)
    kw = loss_kwargs(spec, loss_cfg)
    if spec.kind == "corpus":
        if scores is None or candidates is None or teacher is None:
            raise ConfigError(f"loss '{loss_cfg.name}' scores the whole corpus: it needs corpus scores, candidates "
                              "and teacher scores (task query_tower)")
        return spec.fn(scores, candidates, teacher, **kw)
    if "temperature" in spec.params and spec.kind == "embedding":
        kw["temperature"] = temperature
    if scores is None and spec.kind in ("score", "distill"):
        if q_emb is None or d_emb is None:
            raise ValueError(f"loss '{loss_cfg.name}' needs scores or embeddings")
        scores = grouped_scores(q_emb, d_emb, group_size) / temperature  # cosine / tau: a cross-encoder's scale
    if spec.kind == "embedding":
        if q_emb is None:
            raise ConfigError(f"loss '{loss_cfg.name}' is an embedding loss: it needs query and document embeddings")
        if "teacher" in spec.params:  # an embedding loss with a distillation term
            if teacher is None:
                raise ConfigError(f"loss '{loss_cfg.name}' needs teacher scores (teacher_scores in data.train_file)")
            kw["teacher"] = teacher
        gathered = gather and spec.gathers
        if known_positives is not None and "known_positives" in spec.params:
            kw["known_positives"] = known_positives(gathered)
        if gathered:
            offset = local_target_offset(q_emb.shape[0], group_size)
            return spec.fn(q_emb, gather_with_grad(d_emb), group_size=group_size, target_offset=offset, **kw)
        return spec.fn(q_emb, d_emb, group_size=group_size, **kw)
    if group_size < 2:
        raise ConfigError(f"loss '{loss_cfg.name}' needs hard negatives: a group of one positive has nothing to "
                          "rank (set data.num_negatives / adapter.num_negatives >= 1)")
    if spec.kind == "triplet":
        if q_emb is not None and q_emb.dim() == 3:
            raise ConfigError(f"loss '{loss_cfg.name}' measures distances between single vectors: late interaction "
                              "trains with a score loss (MaxSim scores), e.g. info_nce or margin_mse")
        if q_emb is None:
            raise ConfigError(f"loss '{loss_cfg.name}' is a triplet loss: it needs query and document embeddings")
        d = d_emb.reshape(q_emb.shape[0], group_size, -1)  # (Q, G, H)
        return spec.fn(q_emb, d[:, 0], d[:, 1:], **kw)
    if spec.kind == "distill":
        if teacher is None:
            raise ConfigError(f"loss '{loss_cfg.name}' needs teacher scores (teacher_scores in data.train_file)")
        return spec.fn(scores, teacher, **kw)
    return spec.fn(scores, **kw)


def debiased_info_nce(q_emb: Tensor, d_emb: Tensor, temperature: float | Tensor = 0.05, group_size: int = 1,
                      tau_plus: float = 0.1, target_offset: int = 0) -> Tensor:
    """Debiased contrastive loss (Chuang et al. 2020, arXiv:2007.00224) with in-batch negatives.

    The N = D - 1 "negatives" of query i may hide unlabelled positives (prior tau_plus), so
    their mean is corrected by the positive's share; ``s_ij = q_i . d_j / tau``, target t_i::

        g_i = max( (1/N sum_{j != t_i} e^{s_ij} - tau_plus e^{s_{i,t_i}}) / (1 - tau_plus), e^{-1/tau} )
        L   = -1/Q sum_i log( e^{s_{i,t_i}} / (e^{s_{i,t_i}} + N g_i) )

    tau_plus = 0 is InfoNCE. Shapes: q_emb (Q, H), d_emb (Q*G, H); normalised embeddings
    (the floor e^{-1/tau} is the smallest e^{s} for cosine scores). ``target_offset``: as in
    ``info_nce``, for documents gathered from every process.
    """
    targets = group_targets(q_emb.shape[0], group_size, q_emb.device) + target_offset  # (Q,)
    logits = similarity(q_emb, d_emb) / temperature  # (Q, D)
    shift = logits.detach().max(dim=1, keepdim=True).values  # exp(logits - shift) cannot overflow
    exp = torch.exp(logits - shift)  # (Q, D)
    pos = exp.gather(1, targets[:, None]).squeeze(1)  # (Q,)
    n = d_emb.shape[0] - 1
    neg_mean = (exp.sum(dim=1) - pos) / n
    floor = torch.exp(-1 / torch.as_tensor(temperature) - shift.squeeze(1))  # e^{-1/tau}, shifted too
    g = torch.maximum((neg_mean - tau_plus * pos) / (1 - tau_plus), floor)
    return -torch.log(pos / (pos + n * g)).mean()


register_loss("debiased_info_nce", debiased_info_nce, "embedding")


def poly1_ce(scores: Tensor, poly_epsilon: float = 1.0) -> Tensor:
    """Poly-1 cross-entropy (Leng et al. 2022, PolyLoss, arXiv:2204.12511, eq. 2) over each query's group.

    ``p_i = softmax(scores_i)_0``, the probability of the positive (column 0) among the group::

        L = 1/Q sum_i [ -log p_i + poly_epsilon (1 - p_i) ]

    poly_epsilon = 0 is ``listwise_ce``; > 0 adds the first polynomial term of the cross-entropy
    once more, so a query whose positive is already ahead still pulls. Shapes: scores (Q, G).
    """
    p = F.softmax(scores, dim=-1)[:, 0]
    return (-F.log_softmax(scores, dim=-1)[:, 0] + poly_epsilon * (1 - p)).mean()


register_loss("poly1_ce", poly1_ce, "score")
