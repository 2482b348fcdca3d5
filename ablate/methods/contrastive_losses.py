"""SimCLR's contrastive losses (Chen et al., ICML 2020, Table 2) and its contrastive-task metrics (Table 5).

The two views of N images give 2N embeddings. Each of them is an *anchor* u; its *positive* v⁺ is
the other view of the same image, its *negatives* v⁻ are the other 2N − 2 embeddings of the batch
(the paper's eq. 1). Similarities are dot products u·v, of ℓ2-normalised embeddings (cosines) by
default; `l2_normalize=False` uses the raw projections, the "without ℓ2 norm" rows of Table 5 (as
`hidden_norm=False` in the paper's code, google-research/simclr objective.py). Every loss is
averaged over the 2N anchors.

The losses of Table 2, written as losses to minimise (the table gives objectives to maximise):

* ``nt_xent``: −log( e^{u·v⁺/τ} / Σ_{v ∈ {v⁺, v⁻}} e^{u·v/τ} ), a softmax over the 2N − 1 others;
* ``nt_logistic``: −log σ(u·v⁺/τ) − log σ(−u·v⁻/τ);
* ``margin_triplet``: max(u·v⁻ − u·v⁺ + m, 0) (no temperature in Table 2, so none here).

Where the paper is silent, ablate chooses:

* **How NT-Logistic and the margin loss weigh their many negatives.** Table 2 writes one (u, v⁺, v⁻)
  triple. ablate averages over an anchor's negatives, so for NT-Logistic the positive term and the
  negatives together weigh 1 : 1 (a plain sum would give the positive a weight of 1 / (2N − 1)).
* **Which negatives.** All 2N − 2 for every loss, as NT-Xent has always used here, so the losses of
  a grid compare on the same negatives. (The paper's Appendix B.10 says its loss comparison used
  the negatives of one augmentation view only.)
* **Semi-hard negative mining** (Table 4; Schroff et al. 2015, FaceNet §3.2): each anchor keeps one
  negative, the most similar among those *less* similar than its positive (farther than the
  positive; the margin loss is non-zero only if it is also within the margin); an anchor with no
  such negative keeps its least similar negative. This is the rule of TensorFlow's
  ``triplet_semihard_loss``. With it, NT-Xent becomes a two-way softmax between the positive and
  that negative, NT-Logistic and the margin loss have one negative term.

Table 5's contrastive-task columns are `contrastive_metrics`: the share of anchors whose positive
is the most similar of the 2N − 1 others (ties count as misses), and the entropy (nats) of the
NT-Xent softmax over them, whatever the training loss. (The paper's code measures both over the N
embeddings of the other view only, google-research/simclr tf2/metrics.py.)

NT-Xent is written with `F.cross_entropy` on the masked similarity matrix; NT-Logistic with
`F.logsigmoid` and the margin loss with `relu`; the semi-hard choice is masked max / min. Nothing
here is hand-written beyond that arrangement.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def similarity_matrix(z1: torch.Tensor, z2: torch.Tensor, l2_normalize: bool = True) -> torch.Tensor:
    """The (2N × 2N) dot products of the 2N embeddings [z1; z2], in float32 (cosines when ℓ2-normalised)."""
    z = torch.cat([z1, z2]).float()
    if l2_normalize:
        z = F.normalize(z, dim=1)
    return z @ z.T


def positive_index(n: int, device: torch.device) -> torch.Tensor:
    """For each of the 2N anchors, the index of its positive (the other view): i ↔ i + N."""
    # Made on the device: a CPU tensor copied over would make the host wait for the GPU every step.
    return (torch.arange(2 * n, device=device) + n) % (2 * n)


def negative_mask(n: int, device: torch.device) -> torch.Tensor:
    """(2N × 2N) bool, True where column k is a negative of anchor row i: neither i nor its positive."""
    index = torch.arange(2 * n, device=device)
    not_negative = (index[:, None] == index[None, :]) | (index[None, :] == positive_index(n, device)[:, None])
    return ~not_negative


def semi_hard_negatives(similarities: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Each anchor's semi-hard negative similarity: the largest of its negatives' similarities that
    are below its positive's; the smallest of them when none is below.

    `similarities` (M × K), `positives` (M,) the positive's similarity per row, `negatives` (M × K)
    bool. Gradients reach the chosen entries only.

    >>> s = torch.tensor([[0.9, 0.5, 0.7, -0.2], [0.1, 0.8, 0.6, 0.3]])
    >>> mask = torch.tensor([[True, True, True, True], [True, True, True, True]])
    >>> semi_hard_negatives(s, torch.tensor([0.6, 0.05]), mask)  # 0.5 < 0.6; nothing below 0.05: 0.1
    tensor([0.5000, 0.1000])
    """
    farther = negatives & (similarities < positives[:, None])
    hardest_farther = similarities.masked_fill(~farther, float("-inf")).amax(dim=1)
    least_similar = similarities.masked_fill(~negatives, float("inf")).amin(dim=1)
    return torch.where(farther.any(dim=1), hardest_farther, least_similar)


def _anchor_similarities(z1: torch.Tensor, z2: torch.Tensor, l2_normalize: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarities (2N × 2N), each anchor's positive similarity (2N,), and the negative mask."""
    n = z1.shape[0]
    similarities = similarity_matrix(z1, z2, l2_normalize)
    positives = similarities.gather(1, positive_index(n, similarities.device)[:, None]).squeeze(1)
    return similarities, positives, negative_mask(n, similarities.device)


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, l2_normalize: bool = True, semi_hard: bool = False
) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy (paper eq. 1, Table 2), averaged over all 2N anchors.

    For anchor i the positive is its other view; the 2N − 2 other embeddings of the batch are the
    negatives. Similarity is the cosine (the dot product without ℓ2) divided by the temperature.
    With `semi_hard`, a softmax over the positive and the anchor's semi-hard negative only.

    >>> z = torch.eye(2, 4)  # two images, identical views, orthogonal to each other
    >>> round(nt_xent(z, z.clone(), temperature=0.5).item(), 4)  # -log(e² / (e² + 2 e⁰))
    0.2395
    """
    n = z1.shape[0]
    if semi_hard:
        similarities, positives, negatives = _anchor_similarities(z1, z2, l2_normalize)
        chosen = semi_hard_negatives(similarities, positives, negatives)
        return F.softplus((chosen - positives) / temperature).mean()  # -log(e^p / (e^p + e^n))
    z = torch.cat([z1, z2]).float()
    if l2_normalize:
        z = F.normalize(z, dim=1)
    logits = z @ z.T / temperature
    # An embedding is never its own negative: remove the diagonal from the softmax. In place (no
    # (2N)² mask, no copy); autograd allows it, since dividing by a number keeps no tensor for backward.
    logits.fill_diagonal_(float("-inf"))
    return F.cross_entropy(logits, positive_index(n, z.device))


def nt_logistic(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, l2_normalize: bool = True, semi_hard: bool = False
) -> torch.Tensor:
    """NT-Logistic (Table 2): −log σ(u·v⁺/τ) − mean over the anchor's negatives of log σ(−u·v⁻/τ),
    averaged over the 2N anchors (with `semi_hard`: the one semi-hard negative instead of the mean).

    >>> z = torch.eye(2, 4)  # positives at cosine 1, negatives at 0
    >>> round(nt_logistic(z, z.clone(), temperature=1.0).item(), 4)  # -log σ(1) - log σ(0)
    1.0064
    """
    similarities, positives, negatives = _anchor_similarities(z1, z2, l2_normalize)
    positive_term = -F.logsigmoid(positives / temperature)
    if semi_hard:
        negative_term = -F.logsigmoid(-semi_hard_negatives(similarities, positives, negatives) / temperature)
    else:
        per_pair = -F.logsigmoid(-similarities / temperature)
        negative_term = (per_pair * negatives).sum(dim=1) / negatives.sum(dim=1)
    return (positive_term + negative_term).mean()


def margin_triplet(
    z1: torch.Tensor, z2: torch.Tensor, margin: float, l2_normalize: bool = True, semi_hard: bool = False
) -> torch.Tensor:
    """Margin triplet loss (Table 2): mean over the anchor's negatives of max(u·v⁻ − u·v⁺ + m, 0),
    averaged over the 2N anchors (with `semi_hard`: the one semi-hard negative instead of the mean).
    No temperature: Table 2 has none for it.

    >>> z = torch.eye(2, 4)  # positives at cosine 1, negatives at 0
    >>> margin_triplet(z, z.clone(), margin=1.5).item()  # max(0 - 1 + 1.5, 0)
    0.5
    """
    similarities, positives, negatives = _anchor_similarities(z1, z2, l2_normalize)
    if semi_hard:
        return F.relu(semi_hard_negatives(similarities, positives, negatives) - positives + margin).mean()
    hinge = F.relu(similarities - positives[:, None] + margin)
    return ((hinge * negatives).sum(dim=1) / negatives.sum(dim=1)).mean()


def contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, loss: str, temperature: float, margin: float,
    l2_normalize: bool = True, semi_hard: bool = False,
) -> torch.Tensor:
    """The loss named `loss` ('nt_xent', 'nt_logistic' or 'margin_triplet') of the two views'
    projections; `temperature` is unused by the margin loss, `margin` by the other two.

    >>> z = torch.eye(2, 4)
    >>> contrastive_loss(z, z.clone(), "margin_triplet", temperature=0.5, margin=1.5).item()
    0.5
    """
    if loss == "nt_xent":
        return nt_xent(z1, z2, temperature, l2_normalize, semi_hard)
    if loss == "nt_logistic":
        return nt_logistic(z1, z2, temperature, l2_normalize, semi_hard)
    if loss == "margin_triplet":
        return margin_triplet(z1, z2, margin, l2_normalize, semi_hard)
    raise ValueError(f"unknown contrastive loss {loss!r}; expected nt_xent, nt_logistic or margin_triplet")


class ContrastiveTask(NamedTuple):
    """Per anchor (2N,): whether its positive was the most similar of the 2N − 1 others, and the
    entropy (nats) of the softmax of similarity / τ over them."""

    correct: torch.Tensor
    entropy: torch.Tensor


@torch.no_grad()
def contrastive_metrics(z1: torch.Tensor, z2: torch.Tensor, temperature: float, l2_normalize: bool = True) -> ContrastiveTask:
    """The contrastive prediction task of Table 5, per anchor: is the positive the top-1 among the N
    embeddings of the other view (strictly: a tie is a miss), and the entropy of the softmax over them.

    The candidates are the other view's N embeddings, as the paper's code measures it
    (google-research/simclr, tf2/model.py: `contrast_acc` and `contrast_entropy` on `logits_ab`), not
    the 2N − 1 the loss sees.

    >>> z = torch.eye(2, 4)  # each positive is identical to its anchor, negatives orthogonal
    >>> task = contrastive_metrics(z, z.clone(), temperature=1.0)
    >>> task.correct.tolist()
    [True, True, True, True]
    """
    n = z1.shape[0]
    logits = similarity_matrix(z1, z2, l2_normalize) / temperature
    cross = torch.cat([logits[:n, n:], logits[n:, :n]])  # 2N anchors × the N embeddings of the other view
    positives = torch.arange(n, device=logits.device).repeat(2)
    positive_logit = cross.gather(1, positives[:, None]).squeeze(1)
    best_other = cross.scatter(1, positives[:, None], float("-inf")).amax(dim=1)
    entropy = torch.special.entr(cross.softmax(dim=1)).sum(dim=1)
    return ContrastiveTask(correct=positive_logit > best_other, entropy=entropy)
