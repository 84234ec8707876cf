"""A small CNN trained once per data set, whose features score the VAE's samples."""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vaepipe.atomic import write_tensors
from vaepipe.data.splits import unit
from vaepipe.errors import unreadable
from vaepipe.layout import SIDE, image_shape, side_of
from vaepipe.evaluation.metrics import chunks, class_balance, frechet_distance, images_per_pass
from vaepipe.model.vae import footprint
from vaepipe.resources import FLOAT
from vaepipe.model.optim import Adam, cosine_rates
from vaepipe.params import ClassifierParams


FEATURES = 128  # the penultimate layer: what samples.fd compares


def grid_of(side: int) -> int:
    """The side of the second convolution's output: two stride-2 halvings, rounded up."""
    return (side + 3) // 4


class Classifier(nn.Module):
    def __init__(self, side: int = SIDE, classes: int = 10, grid: int | None = None, channels: int = 1):
        super().__init__()
        grid = grid or grid_of(side)
        # strided convolutions, not convolutions then max-pooling: on a CPU several times
        # faster to train and to score, at the same accuracy (docs/performance.md)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 5, stride=2, padding=2), nn.ReLU(),       # 16 × 14 × 14 for MNIST
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),      # 32 × 7 × 7
            nn.Flatten(), nn.Linear(32 * grid * grid, FEATURES), nn.ReLU(),  # the scored features
        )
        self.head = nn.Linear(FEATURES, classes)

    @property
    def classes(self) -> int:
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(as_images(x)))


def as_images(x: torch.Tensor) -> torch.Tensor:
    """Flat images [N, channels·side²] as the convolutions take them, [N, channels, side, side]."""
    channels, side = image_shape(x.shape[-1])
    return x.view(-1, channels, side, side)


def train_classifier(options: ClassifierParams, train_x, train_y, classes: int, *, device: torch.device) -> Classifier:
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    channels, side = image_shape(train_x.shape[1])
    model = Classifier(side, classes, channels=channels).to(device)
    optimizer = Adam(model.parameters(), lr=options.lr, fused=False)
    # the learning rate falls to 0 along a half cosine: 3 epochs reach what 5 did at a fixed rate
    rates = iter(cosine_rates(options.lr, options.epochs * math.ceil(len(train_x) / options.batch_size)))
    train_x, train_y = train_x.to(device), train_y.to(device)
    for epoch in range(1, options.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for start in tqdm(range(0, len(train_x), options.batch_size), desc=f"classifier epoch {epoch}",
                          unit="batch", leave=False, disable=None, file=sys.stderr):
            batch = order[start:start + options.batch_size]
            loss = F.cross_entropy(model(unit(train_x[batch])), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.lr = next(rates)
            optimizer.step()
    return model.eval()


@torch.no_grad()
def features_and_predictions(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features [N, FEATURES] and predicted classes [N]."""
    model.eval()
    features = torch.cat([model.features(as_images(unit(x[part]))) for part in chunks(len(x))])
    return features, model.head(features).argmax(dim=1)


def sample_quality(classifier: Classifier, model, test_x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
    """`fd`: Fréchet distance between the features of the decoded codes `z` (prior samples,
    or any sampler's) and of the test images; `class_balance`: how evenly the decodings
    spread over the classes."""
    with torch.no_grad():  # decoded a chunk at a time: only the features are kept
        parts = [features_and_predictions(classifier, model.decode(z[part]))
                 for part in chunks(len(z), images_per_pass(footprint(model)))]
    sample_features, predicted = (torch.cat(kept) for kept in zip(*parts))
    test_features, _ = features_and_predictions(classifier, test_x)
    return {"fd": frechet_distance(sample_features.cpu().numpy(), test_features.cpu().numpy()),
            "class_balance": class_balance(predicted.cpu(), classifier.classes)}


def accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return (features_and_predictions(model, x)[1] == y).double().mean().item()


def save_classifier(path, model: Classifier | None) -> None:
    """Its weights; no weights at all for unlabelled data, which has no classifier."""
    state = {} if model is None else model.state_dict()
    write_tensors(path, {name: t.detach().cpu() for name, t in state.items()})


def load_classifier(path, device: torch.device | str = "cpu") -> Classifier | None:
    """The classifier, sized by its weights; None for unlabelled data."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not state:
            return None
        grid = math.isqrt(state["features.5.weight"].shape[1] // 32)
        model = Classifier(classes=state["head.weight"].shape[0], grid=grid,
                           channels=state["features.0.weight"].shape[1]).to(device)
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001 - any failure means the same to the user
        raise unreadable(path, error, "classifier") from None
    return model.eval()


def classifier_needs(batch_size: int, n_train: int, pixels: int, classes: int) -> dict[str, float]:
    """Classifier: one batch's activations (conv 16×14×14, conv 32×7×7, the features for
    MNIST, each before and after its ReLU) forward and backward."""
    half, grid = (side_of(pixels) + 1) // 2, grid_of(side_of(pixels))
    per_image = 2 * 2 * (16 * half * half + 32 * grid * grid + FEATURES + classes)
    return {"classifier.batch_size": min(batch_size, n_train) * per_image * FLOAT}


def scoring_needs(samples: int, d: int, n_test: int) -> dict[str, float]:
    """`sample_quality` of `samples` codes: the codes, and the features of their decodings
    and of the test images, each in float32 and twice in float64 (the Fréchet distance's
    copies). Keyed by the param that sets `samples`."""
    return {"evaluate.fd_samples": samples * 2 * d * 8 + (samples + n_test) * FEATURES * (FLOAT + 2 * 8)}
