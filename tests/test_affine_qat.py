"""QAT in the tflite scheme (microai.quant.affine_qat): what sharded training does to its ranges."""

from __future__ import annotations

import copy

import torch

from microai.quant.affine_qat import RangeObserver
from microai.train.native import use_native_kernels
from microai.train.parallel import ShardedStep


def test_sharded_steps_keep_the_widest_range_the_shards_saw() -> None:
    observer = RangeObserver(-1.0, 1.0, 8)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), observer)
    x = torch.cat([torch.full((2, 4), 0.5), torch.full((2, 4), -3.0)])
    with ShardedStep(net, shards=2, threads=1) as step:
        step.step(x, (torch.zeros(4, dtype=torch.int64),), torch.nn.functional.cross_entropy)
    linear = copy.deepcopy(net[0])
    use_native_kernels(linear)  # the kernels of the step's replicas, whose sums PyTorch's may round otherwise
    per_shard = []
    for half in (x[:2], x[2:]):
        alone = RangeObserver(-1.0, 1.0, 8).train()
        alone(linear(half).detach())
        per_shard.append(alone.range)
    ranges = torch.stack(per_shard)
    assert torch.equal(observer.range, torch.stack([ranges[:, 0].min(), ranges[:, 1].max()]))
    assert not torch.equal(observer.range, torch.tensor([-1.0, 1.0], dtype=torch.float64))
