"""The paper's ResNetv1-6 (F=16) through import, PTQ and the reference executor at test-set scale."""

import time

import numpy as np
import pytest
import torch

from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.quant import reference as R
from microai.quant.ptq import quantize_ptq


@pytest.mark.slow
def test_resnetv1_6_runs_10k_vectors_quickly_and_agrees_with_float() -> None:
    torch.manual_seed(0)
    model = build_model("resnetv1-6", (9, 128), 6, 16).eval()
    g = from_torch(model, (9, 128))
    x = np.random.default_rng(0).normal(size=(10_000, 9, 128)).astype(np.float32)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x[:1000])).numpy()
    float_out = R.run(g, x)
    assert np.abs(float_out[:1000] - torch_out).max() < 1e-5

    for q in (quantize_ptq(g, x[:2000], 16, "network", fixed_frac=9), quantize_ptq(g, x[:2000], 8, "layer")):
        start = time.perf_counter()
        out = R.run(q, x)
        elapsed = time.perf_counter() - start
        assert elapsed < 60, f"{q.precision}: {elapsed:.1f} s for 10k vectors"
        agreement = np.mean(out.argmax(axis=1) == float_out.argmax(axis=1))
        assert agreement > (0.99 if q.width == 16 else 0.95), (q.precision, agreement)
