"""Chapter 1 diagnostic: gradient_mask_report sees masking, detaching and broadcasting."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

from rldebug import qlearning as ql
from rldebug.diagnostics.gradients import check_td_shapes, gradient_mask_report

matplotlib.use("Agg")

B = 16


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    batch = ql.QBatch(
        torch.randn(B, 4),
        torch.randint(3, (B,)),
        torch.randn(B),
        torch.randn(B, 4),
        (torch.rand(B) < 0.2).float(),
        torch.zeros(B),
    )
    return net, batch


def _loss(core, detach=True):
    def loss_fn(model, b):
        q = model(b.obs)
        with torch.set_grad_enabled(not detach):
            next_q = model(b.next_obs)
        y = ql.td_target(b.rewards, next_q, b.terminated, b.truncated, 0.9, detach=detach)
        return core(q, b.actions, y)

    return loss_fn


def _broadcast(q, a, y):
    return ((q.gather(1, a.unsqueeze(1)) - y) ** 2).mean()


def _all_outputs(q, a, y):
    return ((q - y.unsqueeze(1)) ** 2).mean()


def _max(q, a, y):
    return ((q.max(1).values - y) ** 2).mean()


@pytest.mark.parametrize("core", [ql.masked_q_loss, ql.copy_trick_loss])
def test_correct_losses_are_ok(setup, core):
    net, batch = setup
    report = gradient_mask_report(net, _loss(core), batch)
    assert report.ok, report.summary
    assert report.summary.endswith(": OK")
    assert "1 of 3 outputs" in report.summary
    assert report.rows_independent is True
    assert all(p.grad is None for p in net.parameters())  # no .backward() on the model


@pytest.mark.parametrize(
    ("core", "detach", "words"),
    [
        (_broadcast, True, "broadcast"),
        (_all_outputs, True, "not masked"),
        (_max, True, "not taken"),
        (ql.masked_q_loss, False, "not detached"),
    ],
)
def test_bugs_are_named(setup, core, detach, words):
    net, batch = setup
    report = gradient_mask_report(net, _loss(core, detach), batch)
    assert not report.ok
    assert words in report.summary, report.summary


def test_detached_loss_and_plot(setup):
    net, batch = setup
    report = gradient_mask_report(net, lambda m, b: m(b.obs).detach().sum(), batch)
    assert "detached" in report.summary
    good = gradient_mask_report(net, _loss(ql.masked_q_loss), batch)
    fig = good.plot()
    assert fig.axes and fig.axes[0].get_title() == "OK"
    assert "OK" in repr(good) and str(good) == good.summary


def test_bad_loss_fn_inputs(setup):
    net, batch = setup
    with pytest.raises(ValueError, match="broadcast"):
        gradient_mask_report(net, lambda m, b: m(b.obs)[:, :1] - b.rewards, batch)
    with pytest.raises(ValueError, match="never called"):
        gradient_mask_report(net, lambda m, b: b.rewards.sum(), batch)


def test_check_td_shapes_is_reexported():
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        check_td_shapes(torch.zeros(8, 1), torch.zeros(8))
