"""Inference on the model's native twin: the model's function, with logits that do not follow the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_train import blobs

from microai.models import build_model
from microai.train import predict
from microai.train.native import NativeConv2d, NativeLinear
from microai.train.twin import native_twin


@pytest.mark.parametrize("name,shape,lifted,channels_last", [
    ("resnetv1-6", (3, 16), True, True),
    ("resnetv1-6", (3, 8, 8), False, True),
    ("mlp", (3, 16), False, False),
])
def test_a_native_twin_computes_the_models_function(name: str, shape: tuple, lifted: bool,
                                                    channels_last: bool) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 3, 8).eval()
    x, _ = blobs(20, 1, shape)
    twin = native_twin(model)
    assert (twin.lifted, twin.channels_last) == (lifted, channels_last)
    native = (NativeConv2d, NativeLinear)
    assert any(type(m) in native for m in twin.module.modules())
    assert not any(type(m) in native for m in model.modules()), "the model is not changed"
    logits = predict(model, x)
    with torch.no_grad():
        assert torch.equal(twin.module.eval()(twin.input(torch.from_numpy(x))), torch.from_numpy(logits))
        np.testing.assert_allclose(logits, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


#: trains ResNetv1-6 on the UCI-HAR shape for an epoch with validation; prints the log, and the md5 of the
#: validation logits of predict and of PyTorch's own eval-mode forward
_TRAIN_AND_VALIDATE = textwrap.dedent("""
    import hashlib, json
    import torch
    from microai.models import build_model
    from microai.train import TrainConfig, predict, train
    from test_train import blobs
    x, y = blobs(256, 0, (9, 128), 6)
    xv, yv = blobs(512, 1, (9, 128), 6)
    torch.manual_seed(0)
    model = build_model("resnetv1-6", (9, 128), 6, 16)
    cfg = TrainConfig.from_dict({"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [1], "gamma": 0.1,
                                 "mixup_alpha": 0.0, "num_threads": 1})
    history = train(model, x, y, cfg, seed=0, x_val=xv, y_val=yv, progress=False)
    md5 = lambda a: hashlib.md5(a.tobytes()).hexdigest()
    with torch.no_grad():
        pytorch = md5(model.eval()(torch.from_numpy(xv)).numpy())
    print(json.dumps({"history": history, "predict": md5(predict(model, xv)), "pytorch": pytorch}))
""")


def test_a_training_log_is_the_same_bytes_whatever_the_cpus_instruction_set() -> None:
    """The same training with oneDNN held to SSE4.1 and PyTorch's own kernels to AVX2, as on another CPU:
    PyTorch's eval-mode logits change, the log (validation loss) and predict's logits do not. (Below AVX2,
    PyTorch's SGD step itself gives other bits: x86-64 CPUs of the last decade all have AVX2.)"""
    runs = []
    for isa in ({}, {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "avx2"}):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), **isa}
        done = subprocess.run([sys.executable, "-c", _TRAIN_AND_VALIDATE], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    native, older = runs
    assert native["pytorch"] != older["pytorch"], "the instruction sets did not change PyTorch's kernels"
    assert native["history"] == older["history"]
    assert native["predict"] == older["predict"]
