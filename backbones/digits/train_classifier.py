"""Train the digits classifier (the judge of the digits backbone and its feature extractor).

    python -m backbones.digits.train_classifier [--epochs 40] [--seed 0] [--out PATH]

A seeded 80/20 split of the 1797 images: it trains on the 80% (with random shifts of up
to one pixel) and reports its accuracy on the held-out 20%, which is stored in the
checkpoint beside the settings.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from solverbench.progress import progress_bar

from backbones.checkpoints import save_checkpoint
from backbones.digits.classifier import SHIPPED_CLASSIFIER, DigitsClassifier
from backbones.digits.data import digits_dataset

HELD_OUT_FRACTION = 0.2
BACKGROUND = -1.0  # the value of an empty pixel in [-1, 1]


def split(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and held-out images."""
    n = len(digits_dataset()[1])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held_out = int(round(HELD_OUT_FRACTION * n))
    return order[n_held_out:], order[:n_held_out]


def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by -1, 0 or +1 pixel along each axis (background fills in)."""
    padded = F.pad(x, (1, 1, 1, 1), value=BACKGROUND)
    dy, dx = torch.randint(3, (2, len(x)), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] for i in range(len(x))])


def accuracy(model: DigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def train_classifier(epochs: int = 40, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                     progress: bool = True) -> tuple[DigitsClassifier, dict]:
    images, labels = digits_dataset()
    train_idx, held_out_idx = split(seed)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the layers' initialisation
    model = DigitsClassifier()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in progress_bar(range(epochs), desc="digits classifier", unit="epoch", enabled=progress,
                      off_terminal="total"):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(model(random_shift(images[batch], generator)), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    model.eval()
    report = {"train_accuracy": accuracy(model, images[train_idx], labels[train_idx]),
              "held_out_accuracy": accuracy(model, images[held_out_idx], labels[held_out_idx]),
              "held_out_images": len(held_out_idx)}
    return model, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backbones.digits.train_classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(SHIPPED_CLASSIFIER), help=f"default: {SHIPPED_CLASSIFIER}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, report = train_classifier(args.epochs, args.batch_size, args.lr, args.seed)
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    path = save_checkpoint(Path(args.out), model.state_dict(), {**settings, **report})
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s: train accuracy {report['train_accuracy']:.4f}, "
          f"held-out accuracy {report['held_out_accuracy']:.4f} ({report['held_out_images']} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
