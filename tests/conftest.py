import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of many tiny-tensor calls: faster, and far faster on a busy machine."""
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
