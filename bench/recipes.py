"""The source tutorial's two recipes, reproduced faithfully as baselines (not library code)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _net(activation: bool, generator: torch.Generator) -> nn.Sequential:
    with torch.random.fork_rng():  # biases keep nn.Linear's default init: draw it from the seed too
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
        layers: list[nn.Module] = [nn.Linear(3, 64)]
        if activation:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(64, 1))
        net = nn.Sequential(*layers)
    for m in net:
        if isinstance(m, nn.Linear):  # the tutorial's init_weights: xavier_normal_ on weights
            nn.init.xavier_normal_(m.weight, generator=generator)
    return net


def tutorial_recipe(train: np.ndarray, optimized: bool, seed: int, epochs: int | None = None) -> nn.Module:
    """Initial: 3→64→1 linear, 10 epochs, batch 6. Optimized: ReLU, x/y z-score, 100 epochs, batch 2.

    `epochs` overrides the recipe's epoch count (a time-matched run); everything else is the recipe's.

    Both: inputs [x, y, 1], raw labels (never standardized), RAdam lr 1e-3, MSE, shuffled loader.
    Returns a module mapping raw [N, 2] coordinates to raw predictions [N, 1].
    """
    g = torch.Generator().manual_seed(seed)
    xy = torch.from_numpy(train[:, :2].copy())
    labels = torch.from_numpy(train[:, 2].copy())
    mean = xy.mean(dim=0) if optimized else torch.zeros(2)
    std = xy.std(dim=0) + 1e-5 if optimized else torch.ones(2)

    def features(raw: torch.Tensor) -> torch.Tensor:
        return torch.cat([(raw - mean) / std, torch.ones(raw.shape[0], 1)], dim=1)

    net = _net(activation=optimized, generator=g)
    default_epochs, batch = (100, 2) if optimized else (10, 6)
    epochs = default_epochs if epochs is None else epochs
    loss = nn.MSELoss()
    opt = torch.optim.RAdam(net.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(features(xy), labels), batch_size=batch, shuffle=True, generator=g)
    for _ in range(epochs):
        for x, y in loader:
            out = net(x)
            lo = loss(out, y.reshape(out.shape))
            opt.zero_grad()
            lo.backward()
            opt.step()

    class Wrapped(nn.Module):
        def forward(self, raw: torch.Tensor) -> torch.Tensor:
            return net(features(raw))

    return Wrapped()
