"""ablate: augmentation ablations for contrastive self-supervised learning (SimCLR Figure 5 / Table 1)."""

__version__ = "0.1.0"
