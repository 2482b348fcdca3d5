"""kNN accuracy against an independent brute-force reference and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ablate.evaluate.knn import knn_accuracy


def reference_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                       k: int, temperature: float, num_classes: int) -> float:
    """One test point at a time, in float64: cosine similarities, k best, exp(s/T) votes per class."""
    correct = 0
    for x, y in zip(test_x, test_y):
        sims = []
        for j, t in enumerate(train_x):
            sims.append((float(np.dot(x, t) / (np.linalg.norm(x) * np.linalg.norm(t))), j))
        sims.sort(key=lambda pair: -pair[0])
        votes = [0.0] * num_classes
        for sim, j in sims[:k]:
            votes[int(train_y[j])] += math.exp(sim / temperature)
        correct += int(max(range(num_classes), key=lambda c: (votes[c], -c)) == y)
    return 100.0 * correct / len(test_y)


@pytest.mark.parametrize("k, temperature, chunk", [(200, 0.1, 7), (5, 0.1, 1000), (1, 0.5, 3), (20, 0.07, 16)])
def test_matches_brute_force_reference(k: int, temperature: float, chunk: int) -> None:
    rng = np.random.default_rng(k)
    classes, dim = 4, 8
    centres = rng.normal(size=(classes, dim))
    train_y = rng.integers(0, classes, 150)
    test_y = rng.integers(0, classes, 60)
    # Overlapping clusters, so the accuracy is neither 0 nor 100 and depends on k and T.
    train_x = centres[train_y] + 1.5 * rng.normal(size=(150, dim))
    test_x = centres[test_y] + 1.5 * rng.normal(size=(60, dim))
    expected = reference_accuracy(train_x, train_y, test_x, test_y, k, temperature, classes)
    got = knn_accuracy(torch.tensor(train_x, dtype=torch.float32), torch.tensor(train_y),
                       torch.tensor(test_x, dtype=torch.float32), torch.tensor(test_y),
                       k=k, temperature=temperature, num_classes=classes, chunk_size=chunk)
    assert got == pytest.approx(expected)
    assert 0 < got < 100


def test_hand_made_weighted_vote() -> None:
    # Query along +x. Neighbours: one class-0 point at 0° (cos 1) and two class-1 points at 60°
    # (cos 0.5). With T = 0.1: class 0 gets e^10 = 22026, class 1 gets 2·e^5 = 297 → class 0.
    # A plain majority vote (T very large) would pick class 1.
    train = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.5, -math.sqrt(3) / 2], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[3.0, 0.0]])  # not unit length: normalisation must not matter
    assert knn_accuracy(train, labels, query, torch.tensor([0]), k=3, temperature=0.1) == 100.0
    assert knn_accuracy(train, labels, query, torch.tensor([1]), k=3, temperature=100.0) == 100.0
    # k = 4 adds the class-2 point at 180°: weight e^-10, changes nothing.
    assert knn_accuracy(train, labels, query, torch.tensor([0]), k=4, temperature=0.1) == 100.0


def test_known_accuracy_and_k_larger_than_train() -> None:
    train = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    test = torch.tensor([[1.0, 0.1, 0.0], [0.0, 2.0, 0.1], [0.1, 0.0, 1.0], [1.0, 0.0, 0.2]])
    # Nearest-neighbour classes are 0, 1, 2, 0; labels say 0, 1, 0, 0 → 3 of 4 right.
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1, 0, 0]), k=1) == 75.0
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1, 0, 0]), k=200, chunk_size=1) == 75.0


def test_half_precision_features_and_chunking_agree() -> None:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(300, 16, generator=generator)
    labels = torch.randint(0, 5, (300,), generator=generator)
    test = train[:100] + 0.3 * torch.randn(100, 16, generator=generator)
    full = knn_accuracy(train, labels, test, labels[:100], k=10, chunk_size=1000)
    assert knn_accuracy(train, labels, test, labels[:100], k=10, chunk_size=9) == full
    assert full > 80  # each test point is a noisy copy of a training point with its label
    assert abs(knn_accuracy(train.bfloat16(), labels, test.bfloat16(), labels[:100], k=10) - full) <= 3


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unlabelled"):
        knn_accuracy(torch.ones(2, 3), torch.tensor([0, -1]), torch.ones(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="same D"):
        knn_accuracy(torch.ones(2, 3), torch.tensor([0, 1]), torch.ones(1, 4), torch.tensor([0]))
