"""Training, QAT and inference give the same bytes with 1, 2 or 3 threads (microai.train.parallel and
its worker processes, microai.train.workers)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from torch import nn

from microai.models import build_model
from microai.quant.qat import _Rewriter as qat_rewriter
from microai.quant.qat import calibrate, prepare_qat, train_qat
from microai.quant.qat_modules import QuantLayer
from microai.train import TrainConfig, parallel, predict, train
from microai.train.native import ops as native_ops
from microai.train.parallel import ONE_PASS, WORKERS, ScheduleTrial, ShardedStep, ShardingError, shard_bounds
from microai.train.shard import ShardRunner
from microai.train.workers import WorkerError, WorkerPool

SHAPE = (9, 128)  # UCI-HAR's, where PyTorch's own multi-threaded kernels change the weights


def _data(n: int = 256, classes: int = 6, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


def _bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _cfg(threads: int, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [], "gamma": 0.1,
                          "mixup_alpha": 0.2, "shards": 2, "num_threads": threads, **kw})


def _trained(threads: int, model: str = "resnetv1-6", shape: tuple[int, ...] = SHAPE, **options) -> nn.Module:
    x, y = _data(shape=shape)
    torch.manual_seed(0)
    net = build_model(model, shape, 6, 8, **options)
    train(net, x, y, _cfg(threads), seed=0, progress=False)
    return net


@pytest.mark.parametrize("model,shape,options", [
    ("resnetv1-6", SHAPE, {}),
    ("resnet", SHAPE, {"batch_norm": True}),
    ("resnetv1-6", (3, 16, 16), {}),  # 2D: trained in the channels-last memory format
])
def test_float_training_gives_the_same_bytes_with_1_and_2_threads(model: str, shape: tuple,
                                                                  options: dict) -> None:
    assert _bytes(_trained(1, model, shape, **options)) == _bytes(_trained(2, model, shape, **options))


def test_batch_norm_statistics_are_merged_from_the_shards() -> None:
    net = _trained(2, "resnet", batch_norm=True)
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    assert int(bn.num_batches_tracked) == 4  # one update per step, not per shard
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_qat_gives_the_same_bytes_with_1_and_2_threads() -> None:
    x, y = _data()
    float_model = _trained(1)
    cfg = [_cfg(t, lr=0.005, mixup_alpha=0.0) for t in (1, 2)]
    qat = [train_qat(float_model, x, y, c, width=8, seed=1, progress=False)[0] for c in cfg]
    assert _bytes(qat[0]) == _bytes(qat[1])


def _bias_free() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(9, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 128, 6, bias=False))


@pytest.mark.parametrize(("granularity", "float_model"), [
    ("layer", lambda: _trained(1)), ("network", lambda: _trained(1)), ("layer", _bias_free),
], ids=["layer", "network", "layer, no biases"])
def test_qat_weights_quantized_once_per_step_give_the_same_bytes(granularity: str, float_model,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """QATModel.prepare_step (kernels and biases fake-quantized once per step) changes no number."""
    x, y = _data()
    float_model = float_model()
    cfg = _cfg(2, lr=0.005)

    def qat_bytes() -> bytes:
        return _bytes(train_qat(float_model, x, y, cfg, width=8, seed=1, granularity=granularity,
                                progress=False)[0])

    prepared = qat_bytes()
    monkeypatch.setattr(QuantLayer, "quantizes_once_per_step", property(lambda self: False))
    assert qat_bytes() == prepared


def test_inference_gives_the_same_logits_with_1_and_2_threads() -> None:
    x, _ = _data(1100)
    net = _trained(1)
    assert predict(net, x, threads=1).tobytes() == predict(net, x, threads=2).tobytes()


def test_shards_are_a_function_of_the_batch_size_only() -> None:
    assert shard_bounds(64, 4) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert shard_bounds(5, 4) == [(0, 2), (2, 5)]  # every shard keeps two examples
    assert shard_bounds(1, 4) == [(0, 1)]


class _Counter(nn.Module):
    """Changes a buffer in its forward pass without saying how shards merge it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x)


class _HiddenCounter(_Counter):
    """Changes its buffer through ``.data``, which the version counter does not see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.data.add_(1)
        return self.linear(x)


class _PerShardCounter(_Counter):
    """Says it computes each shard of a one-pass step apart, but has no rule for its buffer."""

    per_shard = True


@pytest.mark.parametrize(("model", "match"), [
    (_Counter, "'calls'.*no merge_shard_buffers"),
    (_PerShardCounter, "'calls'.*no merge_shard_buffers"),
    (_HiddenCounter, "'calls'.*in-place"),
], ids=["no merge rule", "no merge rule, one pass", "behind the version counter"])
def test_a_buffer_sharded_training_cannot_merge_is_an_error(model: type[nn.Module], match: str) -> None:
    step = ShardedStep(model(), shards=2, threads=1)
    assert step.together is (model is _PerShardCounter)
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.int64)
    with pytest.raises(ShardingError, match=match):
        step.step(x, (y,), nn.functional.cross_entropy)


class _Twice(nn.Module):
    """Calls one convolution twice: its two QAT layers share the kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(torch.relu(self.conv(x)))), 1))


def test_qat_of_a_module_called_twice_gives_the_same_bytes_with_1_and_2_threads() -> None:
    """A layer sharing its parameters is not prepared once per step (its replica's parameters would
    hold the values of two calls)."""
    x, y = _data(shape=(4, 16))
    trained = []
    for threads in (1, 2):
        torch.manual_seed(0)
        trained.append(_bytes(train_qat(_Twice(), x, y, _cfg(threads, lr=0.005), width=8, seed=1,
                                        progress=False)[0]))
    assert trained[0] == trained[1]


@pytest.mark.parametrize("model,shape,options", [
    ("resnet", SHAPE, {"batch_norm": True}),  # buffers changed by every shard, merged from the workers'
    ("resnetv1-6", (3, 16, 16), {}),
])
def test_training_process_and_two_workers_give_the_bytes_of_one_process(model: str, shape: tuple,
                                                                         options: dict) -> None:
    """3 threads and 4 shards: the training process computes shards 0 and 3, each worker one; a last
    batch of 8 examples reuses the workers."""
    x, y = _data(200, shape=shape)
    trained = []
    for threads in (1, 3):
        torch.manual_seed(0)
        net = build_model(model, shape, 6, 8, **options)
        train(net, x, y, _cfg(threads, shards=4), seed=0, progress=False)
        trained.append(_bytes(net))
    assert trained[0] == trained[1]


def test_a_batch_larger_than_the_first_restarts_the_workers_with_the_same_numbers() -> None:
    x, y = torch.randn(24, 4), torch.randint(0, 2, (24,))
    grads, pools = [], []
    for threads in (1, 2):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        with ShardedStep(net, shards=2, threads=threads) as step:
            for n in (8, 6, 24, 3):  # 3 examples: one shard, computed in the training process
                step.step(x[:n], (y[:n],), nn.functional.cross_entropy)
                grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
                pools.append(step.workers)
    assert all(torch.equal(a, b) for a, b in zip(grads[:4], grads[4:], strict=True))
    assert pools[:4] == [None] * 4  # one thread: no worker
    assert pools[4] is pools[5] and pools[5] is not pools[6] and pools[6] is pools[7]  # 24 > 8: restarted


class _FailsOnMarkedExamples(nn.Module):
    """Fails (``how``: raises, or its process exits) on a batch holding an example marked by x > 100."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x > 100).any()):
            if self.how == "raise":
                raise ValueError("a marked example")
            os._exit(3)
        return self.linear(x)


def test_an_error_in_a_worker_process_is_raised_with_its_traceback() -> None:
    x, y = torch.zeros(8, 4), torch.zeros(8, dtype=torch.int64)
    x[6] = 1000  # in shard 1, which the worker computes
    with ShardedStep(_FailsOnMarkedExamples("raise"), shards=2, threads=2) as step:
        with pytest.raises(ValueError, match="a marked example") as error:
            step.step(x, (y,), nn.functional.cross_entropy)
    assert "in training worker process microai-shards-0" in "".join(error.value.__notes__)
    assert "raise ValueError(\"a marked example\")" in "".join(error.value.__notes__)  # its traceback


def test_a_worker_process_that_dies_is_an_error_naming_its_exit_code() -> None:
    x, y = torch.zeros(8, 4), torch.zeros(8, dtype=torch.int64)
    x[6] = 1000
    with ShardedStep(_FailsOnMarkedExamples("exit"), shards=2, threads=2) as step:
        with pytest.raises(WorkerError, match="died with exit code 3"):
            step.step(x, (y,), nn.functional.cross_entropy)
        assert step.workers is not None and step.workers.closed


def _reusing_a_layer() -> nn.Module:
    conv = nn.Conv1d(4, 4, 3, padding=1)
    return nn.Sequential(conv, nn.ReLU(), conv, nn.Flatten(), nn.Linear(4 * 16, 6))


def test_a_model_calling_a_layer_twice_gives_the_same_bytes_with_1_and_2_threads() -> None:
    """One thread computes the shards of an example-wise model in one pass, until a layer turns out to
    run twice in it (its gradient would sum over its calls before the shards): then shard by shard."""
    x, y = _data(shape=(4, 16))
    trained = []
    for threads in (1, 2):
        torch.manual_seed(0)
        net = _reusing_a_layer()
        train(net, x, y, _cfg(threads), seed=0, progress=False)
        trained.append(_bytes(net))
    assert trained[0] == trained[1]
    with ShardedStep(_reusing_a_layer(), 2, 1) as step:
        assert step.together
        step.step(torch.randn(4, 4, 16), [torch.tensor([0, 1, 2, 3])], nn.functional.cross_entropy)
        assert not step.together


class _Standardize(nn.Identity):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean()) / x.std()  # over the whole batch


@pytest.mark.parametrize(("model", "together"), [
    (lambda: build_model("resnetv1-6", SHAPE, 6, 8), True),
    (lambda: build_model("cnn", (3, 16, 16), 6, 8), True),
    (lambda: build_model("mlp", SHAPE, 6, 8), True),
    (lambda: build_model("resnet", SHAPE, 6, 8, batch_norm=True), False),  # statistics of the batch
    (lambda: nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(9 * 128, 6)), False),
    (lambda: _Twice(), False),  # a forward of its own
    (lambda: nn.Sequential(nn.Flatten(), _Standardize(), nn.Linear(9 * 128, 6)), False),  # a subclass
])
def test_the_shards_of_example_wise_models_can_run_in_one_pass(model, together: bool) -> None:
    for threads in (1, 2):  # with 2, one pass is one of the schedules ScheduleTrial tries
        with ShardedStep(model(), 2, threads) as step:
            assert step.together is together


def test_the_schedule_trial_keeps_the_faster_median() -> None:
    trial = ScheduleTrial(warmup=1, timed=3)
    workers, one_pass = (9.0, 1.0, 5.0, 1.0), (0.1, 2.0, 0.5, 2.0)  # medians after the first: 1.0, 2.0
    for w, o in zip(workers, one_pass, strict=True):
        assert trial.next() == WORKERS
        trial.record(WORKERS, w)
        assert trial.next() == ONE_PASS
        trial.record(ONE_PASS, o)
    assert trial.choice == WORKERS and trial.next() == WORKERS
    trial = ScheduleTrial(warmup=0, timed=1)
    trial.record(WORKERS, 1.0)
    trial.record(ONE_PASS, 0.5)
    assert trial.choice == ONE_PASS


@pytest.mark.parametrize("faster", [WORKERS, ONE_PASS])
def test_two_threads_keep_the_faster_schedule_with_the_bits_of_one(faster: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial's first 8 steps alternate between the worker and one pass; the schedule made faster
    here is kept for the rest of the epoch (the worker stops when it is one pass), and every step gives
    the bits of one thread."""
    x, y = (torch.from_numpy(a) for a in _data(10 * 16))
    calls = []
    run_together, pool_run = ShardRunner.run_together, WorkerPool.run
    monkeypatch.setattr(ShardRunner, "run_together",
                        lambda self, *args: calls.append(ONE_PASS) or run_together(self, *args))
    monkeypatch.setattr(WorkerPool, "run", lambda self, *args: calls.append(WORKERS) or pool_run(self, *args))
    now = [0.0]

    def clock() -> float:  # a step of the faster schedule takes 1 s, of the other 2 s
        now[0] += 1.0 if calls and calls[-1] == faster else 2.0
        return now[0]

    monkeypatch.setattr(parallel, "perf_counter", clock)
    trained = []
    for threads in (1, 2):
        torch.manual_seed(0)
        net = build_model("resnetv1-6", SHAPE, 6, 8)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        with ShardedStep(net, 2, threads) as step:
            step.trial = ScheduleTrial(warmup=1, timed=3)
            for i in range(10):
                step.step(x[16 * i:16 * (i + 1)], (y[16 * i:16 * (i + 1)],), nn.functional.cross_entropy)
                optimizer.step()
            if threads == 2:
                assert step.trial.choice == faster
                assert (step.workers is None) is (faster == ONE_PASS)
        trained.append(_bytes(net))
    assert calls[10:] == [WORKERS, ONE_PASS] * 4 + [faster] * 2
    assert trained[0] == trained[1]


@pytest.mark.parametrize(("granularity", "together"), [("layer", True), ("network", False)])
def test_qat_runs_the_shards_of_one_thread_in_one_pass_per_layer(granularity: str, together: bool) -> None:
    """Per network, each shard's quantizers update one shared range in turn: shard by shard."""
    qat = prepare_qat(build_model("resnetv1-6", SHAPE, 6, 8), 8, granularity=granularity)
    calibrate(qat, _data(64)[0], seed=0)
    with ShardedStep(qat, 2, 1) as step:
        assert step.together is together


@pytest.mark.parametrize(("shape", "shards"), [(SHAPE, 2), ((3, 16, 16), 3)])
def test_qat_in_one_pass_gives_the_bits_of_the_shards_one_by_one(shape: tuple, shards: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards whose inputs differ in scale quantize in different formats, and their layers align the
    bias to different accumulators: one pass keeps each shard's, bit for bit."""
    x, y = (torch.from_numpy(a) for a in _data(48, shape=shape))
    aligned_per_shard = []
    conv = native_ops._conv
    monkeypatch.setattr(native_ops, "_conv", lambda x, weight, bias, *rest, **options:
                        aligned_per_shard.append(bias is not None and bias.dim() == 2)
                        or conv(x, weight, bias, *rest, **options))

    def trained(together: bool) -> tuple[bytes, list[torch.Tensor]]:
        torch.manual_seed(0)
        qat = prepare_qat(build_model("resnetv1-6", shape, 6, 8), 8)
        calibrate(qat, x.numpy(), seed=0)
        qat.train()
        optimizer = torch.optim.SGD(qat.parameters(), lr=0.05, momentum=0.9)
        outputs = []
        with ShardedStep(qat, shards, 1) as step:
            step.together = step.together and together
            for i in range(4):
                batch = x.clone()
                batch[:16] *= 4.0 ** i  # the first shard's ranges grow
                loss, logits = step.step(batch, (y,), nn.functional.cross_entropy)
                optimizer.step()
                outputs += [loss, logits]
            assert step.together is together
            # after the first pass, the passes run on a replica that writes the model's buffers in place
            assert (step.in_place is not None) is together
            if together:
                shared = dict(step.in_place.replica.module.named_buffers())
                assert all(shared[name] is b for name, b in qat.named_buffers())
        return _bytes(qat), outputs

    one_pass = trained(True)
    assert any(aligned_per_shard)
    apart = trained(False)
    assert one_pass[0] == apart[0]
    assert all(torch.equal(a, b) for a, b in zip(one_pass[1], apart[1], strict=True))


@pytest.mark.parametrize("together", [True, False], ids=["one pass", "shard by shard"])
@pytest.mark.parametrize(("model", "shape", "relus"), [
    ("resnetv1-6", SHAPE, 2), ("resnetv1-6", (3, 16, 16), 2), ("mlp", (4, 10), 2)])
def test_a_relu_folded_into_its_layer_gives_the_bits_of_a_relu_after_it(
        model: str, shape: tuple, relus: int, together: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layer's quantizer rectifies its output and the native layer takes the ReLU's gradient: the bits of
    the ReLU as a module of its own, outputs and trained state alike."""
    x, y = (torch.from_numpy(a) for a in _data(48, shape=shape))

    def trained(fold: bool) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        torch.manual_seed(0)
        with monkeypatch.context() as patch:
            if not fold:
                patch.setattr(qat_rewriter, "_is_relu", lambda self, n: False)
            qat = prepare_qat(build_model(model, shape, 6, 8), 8)
        assert sum(m.relu for m in qat.modules() if isinstance(m, QuantLayer)) == (relus if fold else 0)
        calibrate(qat, x.numpy(), seed=0)
        qat.train()
        optimizer = torch.optim.SGD(qat.parameters(), lr=0.05, momentum=0.9)
        outputs = []
        with ShardedStep(qat, 2, 1) as step:
            step.together = step.together and together
            for i in range(3):
                batch = x.clone()
                batch[:24] *= 4.0 ** i
                loss, logits = step.step(batch, (y,), nn.functional.cross_entropy)
                optimizer.step()
                outputs += [loss, logits]
        return qat.state_dict(), outputs

    (folded, folded_outputs), (apart, apart_outputs) = trained(True), trained(False)
    assert folded.keys() == apart.keys()  # (the state's bytes differ: the modules' metadata lists the ReLUs)
    assert all(torch.equal(folded[k].reshape(-1).view(torch.uint8), apart[k].reshape(-1).view(torch.uint8))
               for k in folded)
    assert all(torch.equal(a, b) for a, b in zip(folded_outputs, apart_outputs, strict=True))


def test_a_one_pass_step_that_cannot_keep_its_shards_apart_after_the_first_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pass wrote the model's buffers in place: the step cannot be done again shard by shard."""
    x, y = (torch.from_numpy(a) for a in _data(128))
    qat = prepare_qat(build_model("resnetv1-6", SHAPE, 6, 8), 8)
    calibrate(qat, x.numpy(), seed=0)
    qat.train()
    with ShardedStep(qat, 2, 1) as step:
        step.step(x[:64], (y[:64],), nn.functional.cross_entropy)
        assert step.together and step.in_place is None
        monkeypatch.setattr(native_ops.ShardPass, "per_shard", property(lambda self: False))
        with pytest.raises(ShardingError, match="after an earlier one could"):
            step.step(x[64:], (y[64:],), nn.functional.cross_entropy)


def test_a_batch_over_the_one_pass_limit_runs_shard_by_shard_with_the_same_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    passes = []
    run_together = ShardRunner.run_together
    monkeypatch.setattr(ShardRunner, "run_together",
                        lambda self, *args: passes.append(1) or run_together(self, *args))
    one_pass = _bytes(_trained(1))
    assert passes
    passes.clear()
    monkeypatch.setattr(parallel, "ONE_PASS_MAX_VALUES", 64 * 9 * 128 - 1)  # one batch of 64 more
    assert _bytes(_trained(1)) == one_pass
    assert not passes
