"""Class prototypes (utils/training/passes.py): means of the training embeddings, the paper's draws for empty classes."""
import numpy as np
import torch

from losses.ema import class_means
from utils.training.passes import prototypes_from_sums


def _paper_draws(seed, n_empty, dim):
    """What the paper's evaluation does: seed numpy's global generator, one normal(size=D) per empty class."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        rows = [np.random.normal(size=dim) for _ in range(n_empty)]
    finally:
        np.random.set_state(state)
    return np.stack([r / np.linalg.norm(r) for r in rows])


def test_empty_class_prototypes_are_the_papers_numpy_draws():
    dim, seed = 7, 3  # an odd D: the normal pairs straddle two classes' draws
    f = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0], [3.0, 4.0, 0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0, 0, 0]])
    labels = torch.tensor([1, 1, 4])  # classes 0, 2, 3 and 5 have no training image
    protos = prototypes_from_sums(*class_means(f, labels, 6), seed)
    assert protos.dtype == torch.float32
    np.testing.assert_allclose(protos[[0, 2, 3, 5]].numpy(), _paper_draws(seed, 4, dim), rtol=0, atol=1e-7)
    # the others are the normalised means: (1, 0) and (0.6, 0.8) -> (1.6, 0.8) / |.|
    np.testing.assert_allclose(protos[1, :2].numpy(), np.array([1.6, 0.8]) / np.hypot(1.6, 0.8), atol=1e-7)
    np.testing.assert_allclose(protos[4].numpy(), np.eye(dim)[2], atol=1e-7)


def test_empty_class_draws_leave_numpy_global_state_alone():
    np.random.seed(11)
    expected = np.random.normal(size=3)
    np.random.seed(11)
    prototypes_from_sums(torch.zeros(2, 4), torch.tensor([0, 0]), seed=5)
    np.testing.assert_array_equal(np.random.normal(size=3), expected)


def test_draws_depend_on_the_seed_only():
    a = prototypes_from_sums(torch.zeros(3, 5), torch.tensor([0, 2, 0]), seed=1)
    b = prototypes_from_sums(torch.zeros(3, 5), torch.tensor([0, 9, 0]), seed=1)
    assert torch.equal(a[[0, 2]], b[[0, 2]])
    np.testing.assert_allclose(a[[0, 2]].numpy(), _paper_draws(1, 2, 5), atol=1e-7)
