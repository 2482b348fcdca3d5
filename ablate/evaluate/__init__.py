"""Evaluation of a frozen encoder: features once, then a linear probe and kNN on them."""
