"""Training helpers: ``ConstraintSet`` ordering and ``MetricRecorder`` per-step records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.plugins.constraints import ConstraintSet, MetricRecorder


def test_recorder_records_each_step_and_matches_numpy():
    torch.manual_seed(0)
    pre = nn.Linear(6, 6)
    head = nn.Linear(6, 2)
    captured = {}
    pre.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))
    cs = ConstraintSet([ef.create("constraint", "olr"), ef.create("constraint", "nog")])
    assert [c.name for c in cs.constraints] == ["nog", "olr"]
    params = list(pre.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    cs.attach(pre, optimizer=opt)

    def covariance():
        x = captured["x"].detach()
        x = x - x.mean(0)
        return x.mT @ x / x.shape[0]

    rec = MetricRecorder(pre, covariance=covariance).attach(opt)
    x = torch.randn(40, 6)
    for _ in range(7):
        opt.zero_grad()
        head(torch.relu(pre(x))).square().mean().backward()
        opt.step()
    hist = rec.history()
    assert set(hist) == {"condition_number/0", "orthogonality_error/0", "covariance_condition"}
    assert all(len(v) == 7 for v in hist.values())
    W = pre.weight.detach().double().numpy()
    assert hist["condition_number/0"][-1] == pytest.approx(np.linalg.cond(W), rel=1e-5)
    assert hist["orthogonality_error/0"][-1] == pytest.approx(
        np.linalg.norm(W @ W.T - np.eye(6)), rel=1e-5
    )
    feats = captured["x"].detach().double().numpy()
    assert hist["covariance_condition"][-1] == pytest.approx(
        np.linalg.cond(np.cov(feats.T, bias=True)), rel=1e-4
    )
    rec.detach()
    cs.detach()
    assert not opt._optimizer_step_post_hooks and not opt._optimizer_step_pre_hooks


def test_constraint_set_penalty_sums_penalties():
    layer = nn.Linear(4, 4)
    cs = ConstraintSet(
        [
            ef.create("constraint", "orth-loss", weight=2.0),
            ef.create("constraint", "spectral-norm", method="exact"),
        ]
    )
    cs.attach(layer)
    W = layer.weight.detach().double().numpy()
    assert float(cs.penalty().detach()) == pytest.approx(
        2.0 * np.linalg.norm(W @ W.T - np.eye(4)), rel=1e-5
    )
    assert ConstraintSet([ef.create("constraint", "nog")]).penalty() == 0.0
    cs.detach(restore=True)
    assert type(layer) is nn.Linear
