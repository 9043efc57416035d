"""A tiny analytic backbone that records where it is evaluated: the diffusers parity tests' model."""
import torch


class SwirlBackbone(torch.nn.Module):
    """A fixed smooth nonlinear velocity ``v = tanh(x W) (1 + t) + sin(2 t) x - 1/2``; it records its inputs."""

    sample_shape = (3,)
    num_classes = None
    null_label = None

    def __init__(self):
        super().__init__()
        self.W = torch.tensor([[0.8, -0.5, 0.3], [0.2, 0.9, -0.4], [-0.6, 0.1, 0.7]], dtype=torch.float64)
        self.inputs: list[tuple[torch.Tensor, float]] = []

    def forward(self, x, t, y=None):
        self.inputs.append((x.clone(), float(t[0])))
        t = t[:, None]
        return torch.tanh(x @ self.W.to(x.dtype)) * (1 + t) + torch.sin(2 * t) * x - 0.5

    @property
    def times(self) -> list[float]:
        return [t for _, t in self.inputs]
