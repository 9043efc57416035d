import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread for every test: the tests make many tiny-tensor calls, which one thread runs faster
    (far faster on a busy machine), and the shipped checkpoints were trained and are checked on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


class LinearBackbone(torch.nn.Module):
    """A tiny neural-looking backbone: v = A x + b(t), with sample shape (4,), no classes."""

    sample_shape = (4,)
    num_classes = None
    null_label = None

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, t, y=None):
        return self.lin(x) * (1 + t[:, None])


@pytest.fixture
def linear_backbone():
    return LinearBackbone()
