"""padding_leak_test: right verdicts on masked and unmasked losses, in both layouts."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import nn

from rldebug.diagnostics.padding import padding_leak_test
from rldebug.recurrent import masked_mean


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, T, D) batch-first, or (T, B, D) time-major
    actions: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor


def _batch(time_major: bool = False, b: int = 5, t: int = 7) -> Batch:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([7, 3, 5, 1, 6])[:b]
    mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
    obs = torch.randn(b, t, 3, generator=g) * mask[..., None]
    actions = torch.randint(0, 2, (b, t), generator=g) * mask
    returns = torch.randn(b, t, generator=g) * mask
    batch = Batch(obs, actions, returns, mask)
    if time_major:  # (B, T, ...) -> (T, B, ...)
        batch = Batch(*(x.transpose(0, 1) for x in batch))
    return batch


torch.manual_seed(0)
LSTM = nn.LSTM(3, 8)  # PyTorch's default: sequence-first (T, B, D)
HEAD = nn.Linear(8, 2)


def _errors(batch: Batch, time_major: bool) -> torch.Tensor:
    obs = batch.obs if time_major else batch.obs.transpose(0, 1)  # (B, T, D) -> (T, B, D)
    out, _ = LSTM(obs)  # (T, B, H)
    q = HEAD(out).gather(2, (batch.actions if time_major else batch.actions.T)[..., None])
    q = q.squeeze(2)  # (T, B)
    returns = batch.returns if time_major else batch.returns.T
    return (q - returns) ** 2  # (T, B)


@pytest.mark.parametrize("time_major", [False, True])
def test_a_masked_loss_passes_and_an_unmasked_one_leaks(time_major):
    batch = _batch(time_major)

    def masked(b):
        errors = _errors(b, time_major)
        return masked_mean(errors, b.mask if time_major else b.mask.T)

    def unmasked(b):
        return _errors(b, time_major).mean()

    assert padding_leak_test(masked, batch).ok
    report = padding_leak_test(unmasked, batch)
    assert not report.ok and "PADDING LEAKS" in str(report)


def test_a_cleanrl_style_loss_with_boolean_indexing_passes():
    batch = _batch()

    def loss(b):  # a plain function on the batch, as a single-file script writes it
        errors = _errors(b, time_major=False).T  # (T, B) -> (B, T)
        return errors[b.mask].mean()

    assert padding_leak_test(loss, batch).ok


def test_a_target_that_bootstraps_from_the_padding_leaks():
    batch = _batch()

    def loss(b):  # one-step target from the next slot, with no terminal flag at the end
        values = b.obs.sum(-1)  # (B, T): a stand-in for V(s_t)
        target = b.returns[:, :-1] + 0.9 * values[:, 1:]
        return masked_mean((values[:, :-1] - target) ** 2, b.mask[:, :-1])

    assert not padding_leak_test(loss, batch).ok


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="named tuple"):
        padding_leak_test(lambda b: b.sum(), torch.zeros(2, 3))
    full = _batch()._replace(mask=torch.ones(5, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="no padded steps"):
        padding_leak_test(lambda b: b.obs.mean(), full)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        padding_leak_test(
            lambda b: b.obs.mean(), _batch()._replace(mask=torch.ones(5, dtype=torch.bool))
        )
