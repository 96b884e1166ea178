"""QAT on real data (Free Spoken Digit Dataset): it recovers the accuracy the paper's PTQ loses (and beats
round-to-nearest PTQ), and the exported integer graph predicts exactly like the QAT model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data_support import FSDD_ZIP, needs_shared

from microai.data.fsdd import load
from microai.data.prepared import channel_statistics, standardize
from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.quant import reference
from microai.quant.ptq import quantize_ptq
from microai.quant.qat import export_qat, train_qat
from microai.train import TrainConfig, evaluate, predict, train

pytestmark = needs_shared(FSDD_ZIP)


@pytest.fixture(scope="module")
def fsdd() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    splits = load(FSDD_ZIP, sample_rate=8000, window_ms=50.0, hop_ms=25.0, frames=39)
    mean, std = channel_statistics(splits.x_train)
    return (standardize(splits.x_train, mean, std), splits.y_train,
            standardize(splits.x_test, mean, std), splits.y_test)


@pytest.fixture(scope="module")
def float_model(fsdd) -> torch.nn.Module:
    x, y, _, _ = fsdd
    torch.manual_seed(0)
    model = build_model("resnetv1-6", x.shape[1:], 10, 8)
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.05, milestones=[3], gamma=0.13, mixup_alpha=0.2)
    train(model, x, y, cfg, seed=0, progress=False)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("width,min_gain", [(8, 0.0), (5, 0.2)])
def test_qat_recovers_ptq_accuracy_and_export_agrees(fsdd, float_model, width: int, min_gain: float) -> None:
    x, y, xt, yt = fsdd
    float_acc = evaluate(float_model, xt, yt)
    graph = from_torch(float_model, x.shape[1:])
    # the paper's PTQ (floor shifts, truncated weights), and round-to-nearest PTQ, the default
    paper_ptq = quantize_ptq(graph, x, width, "layer", rounding="floor", quant_rounding="trunc")
    ptq_acc = reference.accuracy(paper_ptq, xt, yt)
    nearest_acc = reference.accuracy(quantize_ptq(graph, x, width, "layer"), xt, yt)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.005, milestones=[2], gamma=0.13, mixup_alpha=0.0)
    qat, _ = train_qat(float_model, x, y, cfg, width=width, seed=0, progress=False)
    graph = export_qat(qat, x.shape[1:], width)
    qat_pred = predict(qat, xt).argmax(axis=1)
    ref_pred = reference.predict(graph, xt)
    agreement = float(np.mean(qat_pred == ref_pred))
    qat_acc = reference.accuracy(graph, xt, yt)
    print(f"int{width}: float {float_acc:.3f} PTQ {ptq_acc:.3f} (nearest {nearest_acc:.3f}) "
          f"QAT {qat_acc:.3f} agreement {agreement:.4f}")
    assert agreement == 1.0
    assert qat_acc >= ptq_acc + min_gain
    assert qat_acc >= nearest_acc
    if width == 8:
        assert qat_acc >= float_acc - 0.02
