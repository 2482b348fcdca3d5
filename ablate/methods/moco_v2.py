"""MoCo v2 (Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive Learning", 2020).

MoCo (He et al., CVPR 2020) contrasts a query q = g(f(x)) of one view with the key k+ of the other
view, computed by a *key encoder* that follows the query encoder by an exponential moving average,
and with K negative keys kept in a queue from earlier batches. The loss is InfoNCE (MoCo eq. 1)::

    L_q = −log  exp(q·k+ / τ) / (exp(q·k+ / τ) + Σ_{k− in queue} exp(q·k− / τ))

with q and the keys ℓ2-normalised. MoCo v2 adds an MLP head (here `mlp(feature_dim,
proj_hidden_dim, proj_output_dim)`) and SimCLR's stronger augmentation (the grid's `augment`).

Recipe: solo-learn's CIFAR-10 MoCo v2+ (scripts/pretrain/cifar/mocov2plus.yaml; the spec's defaults:
τ = 0.2, K = 32768, head 2048 → 256, key momentum 0.99 → 0.999 on BYOL's cosine schedule).

Choices, and why:

* **Symmetrised loss** (MoCo v2+, as solo-learn's recipe; the MoCo v2 paper itself uses one
  direction): queries of view 1 against keys of view 2 and queries of view 2 against keys of view 1,
  the two InfoNCE terms averaged, so the loss keeps the paper's scale (log(K + 1) at chance).
* **Both views' keys are enqueued** (2N keys a step, view 1's then view 2's): every key computed in
  the step is a valid negative for later batches, and the queue then spans K / 2N steps instead of
  K / N, so its keys are fresher (closer to the current key encoder: the "consistency" MoCo argues
  for). solo-learn gets the same by keeping one queue per view; one queue of K keys keeps the
  spec's `queue_size` the number of negatives each query sees.
* **The queue is updated inside `loss`**, right after the logits are computed (as the official
  code's `_dequeue_and_enqueue` follows the loss), since the keys are gone by `after_step`. The
  negatives are a snapshot of the queue: autograd keeps them for the backward pass, which runs after
  the queue has been overwritten. The write is index arithmetic on device tensors, wrap-around
  included (``(pointer + arange(n)) % K``), with no host sync; when a step has more keys than K, the
  last K are kept.
* **The queue and its pointer are registered buffers**, so state_dict (and so the checkpoint) holds
  them. The initial queue is random unit vectors drawn from torch's global generator when the
  method is built (after ``torch.manual_seed(spec.seed)`` in a run, so it follows the run's seed).
* **One forward pass per encoder over both views** (``torch.cat``): batch norm sees 2N images, as
  in SimCLR. MoCo's shuffling BN needs several devices; on one device there is none (solo-learn's
  single-GPU recipe has none either).
* **On several processes** (`ablate.distributed`): batch norm is over the global batch in both encoders (the
  key encoder's too: global BN rather than MoCo's shuffling BN), each rank's InfoNCE is the mean over its own
  queries (DDP's average of the ranks' means is the global mean), and the keys that enter the queue are the
  global batch's, gathered from every rank in the one-process order (view 1's of the whole batch, then
  view 2's). So the queue and its pointer are the same on every rank and equal to one process's, and so are
  the key encoder's EMA updates (every rank has the same weights after each DDP step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.config.methods import MoCoV2Spec
from ablate.distributed import gather_from_ranks
from ablate.methods.base import Forward, MethodContext, TwoViewMethod
from ablate.methods.momentum import cosine_momentum, ema_update_, frozen_copy
from ablate.models.heads import mlp


def infonce_with_queue(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE (eq. 1), averaged over the N queries.

    `queries` [N, d] and their positive `keys` [N, d] (row i is query i's positive), `queue` [K, d]
    the negatives shared by every query; all ℓ2-normalised. Logits are [q·k+, q·queue^T] / τ, so the
    positive is class 0 of a (K + 1)-way cross-entropy.
    """
    positives = (queries * keys).sum(dim=1, keepdim=True)
    negatives = queries @ queue.T
    logits = torch.cat([positives, negatives], dim=1) / temperature
    # Made on the device: a CPU tensor copied over would make the host wait for the GPU every step.
    labels = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    return F.cross_entropy(logits, labels)


class MoCoV2(TwoViewMethod):
    """MoCo v2: query encoder f + MLP head g, an EMA key encoder, a queue of negative keys, InfoNCE.

    Trains on the unlabelled split (`DatasetSplits.pretrain`). `queue` [K, d] holds ℓ2-normalised
    keys; `queue_pointer` is the row the next key goes to.

    Example (one step's loss: the 2 × 8 keys of the batch then enter the queue)::

        >>> import torch
        >>> from ablate.augment import ViewMaker
        >>> from ablate.config import AugmentSpec, ModelSpec
        >>> from ablate.config.methods import MoCoV2Spec
        >>> from ablate.methods.base import MethodContext
        >>> from ablate.models import build_encoder
        >>> model = ModelSpec(arch="small_cnn")
        >>> context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
        >>> moco = MoCoV2(MoCoV2Spec(queue_size=64, proj_hidden_dim=32, proj_output_dim=16), context)
        >>> images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> views = moco.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
        >>> loss = moco.loss(views, torch.zeros(8, dtype=torch.long))
        >>> loss.shape, bool(loss > 0), moco.queue.shape, int(moco.queue_pointer)
        (torch.Size([]), True, torch.Size([64, 16]), 16)
        >>> moco.after_step(1, 100)  # the key encoder moves towards the query encoder (momentum 0.99)
    """

    spec_class = MoCoV2Spec
    target_branch = "key"

    queue: torch.Tensor
    queue_pointer: torch.Tensor

    def __init__(self, spec: MoCoV2Spec, context: MethodContext):
        super().__init__(spec, context)
        self.head = mlp(self.encoder.feature_dim, spec.proj_hidden_dim, spec.proj_output_dim)
        self.key_encoder = frozen_copy(self.encoder)
        self.key_head = frozen_copy(self.head)
        self.temperature = spec.temperature
        initial_keys = F.normalize(torch.randn(spec.queue_size, spec.proj_output_dim), dim=1)
        self.register_buffer("queue", initial_keys)
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def forward(self, images: torch.Tensor, branch: str = "query") -> torch.Tensor:
        """g(f(x)) of the query encoder ("query"), or of the key encoder ("key"); not normalised.
        This is the part that `torch.compile` compiles (once per branch)."""
        if branch == "query":
            return self.head(self.encoder(images))
        if branch == "key":
            return self.key_head(self.key_encoder(images))
        raise ValueError(f"MoCo v2 has branches 'query' and 'key', not {branch!r}")

    def embedding(self, features: torch.Tensor) -> torch.Tensor:
        """q = g(h): the query projection InfoNCE compares (for the collapse diagnostic)."""
        return self.head(features)

    def loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, forward: Forward | None = None) -> torch.Tensor:
        """Symmetrised InfoNCE of the two views against the queue, then the batch's keys enter the queue."""
        view1, view2 = inputs
        both = torch.cat([view1, view2])
        run = forward or self
        queries = F.normalize(run(both, "query").float(), dim=1)
        with torch.no_grad():  # keys are constants: no gradient reaches the key encoder
            keys = F.normalize(run(both, "key").float(), dim=1)
        q1, q2 = queries.chunk(2)
        k1, k2 = keys.chunk(2)
        negatives = self.queue.clone()  # a snapshot: autograd needs it after the queue is overwritten below
        loss = (infonce_with_queue(q1, k2, negatives, self.temperature) + infonce_with_queue(q2, k1, negatives, self.temperature)) / 2
        # Every rank's keys, view 1's of the global batch then view 2's, as one process orders them (no gradient).
        self.enqueue(torch.cat([gather_from_ranks(k1), gather_from_ranks(k2)]))
        return loss

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write `keys` [n, d] into the queue from the pointer on, wrapping around; advance the pointer.

        Device-side index arithmetic (no host sync). With n > K only the last K keys are written,
        so that no row is written twice in one call (CUDA leaves the winner of duplicates undefined),
        in the rows the one-at-a-time ring would leave them in: the pointer still advances by n, so
        it always points at the oldest key.
        """
        size = self.queue.shape[0]
        count = keys.shape[0]
        kept = keys.detach()[-size:].to(self.queue.dtype)
        skipped = count - kept.shape[0]  # keys that a one-at-a-time write would overwrite within this call
        rows = (self.queue_pointer + skipped + torch.arange(kept.shape[0], device=self.queue.device)) % size
        self.queue.index_copy_(0, rows, kept)
        self.queue_pointer.copy_((self.queue_pointer + count) % size)

    def key_momentum(self, step: int, total_steps: int) -> float:
        """The EMA momentum after step `step` of `total_steps` (cosine from momentum_base to momentum_final)."""
        return cosine_momentum(step, total_steps, self.spec.momentum_base, self.spec.momentum_final)

    def after_step(self, step: int, total_steps: int) -> None:
        """Key encoder and head ← m · key + (1 − m) · query (MoCo eq. 2), m on the cosine schedule."""
        momentum = self.key_momentum(step, total_steps)
        ema_update_(self.key_encoder, self.encoder, momentum)
        ema_update_(self.key_head, self.head, momentum)
