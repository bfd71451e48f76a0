"""Small feed-forward networks: the Q-networks of the DQN chapters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["mlp", "q_network"]


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """A multilayer perceptron ``in_dim -> hidden... -> out_dim`` with a linear output layer."""
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"in_dim and out_dim must be >= 1, got {in_dim} and {out_dim}")
    if any(int(h) < 1 for h in hidden):
        raise ValueError(f"every hidden width must be >= 1, got {tuple(hidden)}")
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, int(h)), activation()]
        width = int(h)
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def q_network(
    obs_shape: Sequence[int], n_actions: int, hidden: Sequence[int] = (64, 64)
) -> nn.Sequential:
    """A Q-network: a batch of observations ``(B, *obs_shape)`` -> Q-values ``(B, n_actions)``.

    Observations with more than one axis (a frame stack ``(k, d)``, say) are flattened
    first: ``(B, k, d) -> (B, k * d)``.
    """
    obs_shape = tuple(int(s) for s in obs_shape)
    if not obs_shape:
        raise ValueError("obs_shape is empty: a Q-network needs at least one input feature")
    in_dim = int(np.prod(obs_shape))
    body = mlp(in_dim, int(n_actions), hidden)
    return nn.Sequential(nn.Flatten(start_dim=1), *body)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable scalars in ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def grad_norm(net: nn.Module) -> float:
    """Global L2 norm of the gradients currently stored in ``net`` (0.0 if none)."""
    norms = [p.grad.detach().norm() for p in net.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
