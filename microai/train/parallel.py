"""Data-parallel training steps whose numbers do not depend on the number of threads.

PyTorch's CPU kernels split their reductions (a convolution's weight gradient, a sum) between
its intra-op threads, so the same seed gives different weights with 1 or 2 threads. Here the
numerics are fixed instead: every batch is cut into ``shards`` slices (a hyper-parameter, like the
batch size); each slice's loss and gradients are computed with one intra-op thread on a replica
of the model, by whichever of the ``threads`` workers is free, and the gradients are summed on
the model in shard order. ``threads`` only changes how fast this goes.

Models with 2D convolutions train in the channels-last memory format (about twice as fast on CPU
for the paper's image models; like the shard count, a fixed choice). Models with 1D convolutions
train lifted to 2D (``microai.train.lift``) in the same format, when they can be.

State that a forward pass changes is merged the same way after every step: each shard starts from
the model's buffers, and the model then takes BatchNorm running statistics averaged over the
shards, or what a module's ``merge_shard_buffers(list of per-shard buffer dicts)`` computes (the
QAT quantizers: the largest range). A replica is given the model's parameters and buffers once per
step; between two shards it runs, only the buffers of the modules its last shard changed are
restored, and only those are kept for the merge (a module none of whose buffers a shard changed is
not merged). A module counts as changed when the version counter of one of its buffers moved (an
in-place update: BatchNorm's ``num_batches_tracked``, a quantizer's ``fill_``); the first step checks
that the buffers of every other module kept their values. BatchNorm normalises each shard with its
own statistics (ghost batch norm). Work that depends on the parameters alone is done once per step: a
module whose ``prepares_steps`` is true has ``prepare_step()`` called on the model, without
gradients, before the shards, and its replicas have ``prepared_step = True``: they read what it
prepared from their buffers (QAT quantizes its weights this way, and its replicas compute with these
values written into their own parameters, which get the model's back at the next step).
A model with dropout runs its shards one after another, since its random draws come from torch's
global generator.
"""

from __future__ import annotations

import copy
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from microai.train.lift import lift_to_2d, to_model_shape

#: A shard needs two examples at least (batch norm cannot train on one).
MIN_SHARD = 2


class ShardingError(RuntimeError):
    """A model whose per-step state cannot be merged across shards."""


@contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """torch's intra-op threads set to 1 (restored after): each kernel's arithmetic is fixed."""
    previous = torch.get_num_threads()
    if previous == 1:  # changing the count is not free (thread pools, kernel caches): only when needed
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``min(shards, n // MIN_SHARD)`` (at least one) contiguous slices of ``range(n)``, sizes as equal
    as possible: a function of ``n`` and ``shards`` only."""
    count = max(1, min(shards, n // MIN_SHARD))
    edges = [round(i * n / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def default_threads() -> int:
    return torch.get_num_threads()


def map_in_order(fn: Callable[[int], object], count: int, threads: int,
                 pool: ThreadPoolExecutor | None = None) -> list:
    """``[fn(0), ..., fn(count - 1)]`` computed by ``threads`` workers (of ``pool`` if given) with
    single-threaded kernels."""
    with single_threaded_kernels():
        if threads <= 1 or count <= 1:
            return [fn(i) for i in range(count)]
        if pool is not None:
            return list(pool.map(fn, range(count)))
        with ThreadPoolExecutor(min(threads, count)) as own:
            return list(own.map(fn, range(count)))


def inference(model: nn.Module, x: torch.Tensor, chunk: int, threads: int) -> torch.Tensor:
    """``model(x)`` without gradients, in chunks of ``chunk`` examples spread over ``threads`` workers."""
    starts = list(range(0, len(x), chunk))

    def run(i: int) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            return model(x[starts[i]:starts[i] + chunk])

    return torch.cat(map_in_order(run, len(starts), threads))


@dataclass
class _Replica:
    module: nn.Module
    params: list[nn.Parameter]
    #: ``params`` viewed with the model's parameter shapes (a lifted replica's differ)
    shaped: list[torch.Tensor]
    buffers: list[torch.Tensor]
    #: the step whose parameters and buffers it holds (0: none yet)
    step: int = 0
    #: positions in ``buffers`` that its last shard changed, restored before its next one
    changed: list[int] = field(default_factory=list)


@dataclass
class _ShardResult:
    loss: torch.Tensor
    logits: torch.Tensor
    grads: list[torch.Tensor | None]
    #: the shard's buffers: its own copy at the positions in ``changed``, the model's elsewhere
    buffers: list[torch.Tensor]
    changed: frozenset[int]


class ShardedStep:
    """Sets the model's ``.grad`` to the gradient of a batch's mean loss, summed over fixed shards.

    See the module docstring; ``threads`` workers each own a replica of ``model``. Use it as a
    context manager (its worker threads stop at the end).
    """

    def __init__(self, model: nn.Module, shards: int, threads: int) -> None:
        self.model = model
        self.shards = shards
        self.threads = 1 if _has_dropout(model) else max(1, min(threads, shards))
        self.params = list(model.parameters())
        self.buffers = list(model.buffers())
        lifted = lift_to_2d(model)
        self.lifted = lifted is not None
        self.channels_last = self.lifted or any(p.dim() == 4 for p in self.params)
        self.replicas: queue.SimpleQueue[_Replica] = queue.SimpleQueue()
        #: qualified names of the modules that prepare every step
        self.preparing = [name for name, m in model.named_modules() if getattr(m, "prepares_steps", False)]
        source = model if lifted is None else lifted
        for i in range(self.threads):  # the lifted twin is a copy already: the first replica
            replica = lifted if i == 0 and lifted is not None else copy.deepcopy(source)
            self.replicas.put(self._replica(replica))
        index = {id(b): i for i, b in enumerate(self.buffers)}
        #: (merge function, {buffer name in its module: position in self.buffers}) per stateful module
        self.mergers = [(merge, {name: index[id(b)] for name, b in module.named_buffers(recurse=False)})
                        for module, merge in _mergers(model)]
        merged = {i for _, positions in self.mergers for i in positions.values()}
        self.unmerged = [(i, name) for i, (name, _) in enumerate(model.named_buffers()) if i not in merged]
        #: positions in self.buffers of each module's own buffers: a shard changes them together
        self.groups = [group for m in model.modules()
                       if (group := [index[id(b)] for b in m.buffers(recurse=False)])]
        self.steps = 0
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        #: per shard index, the tensors that keep a replica's buffers after that shard for the merge
        self.stashes: list[list[torch.Tensor]] = []

    def _replica(self, module: nn.Module) -> _Replica:
        module.train()
        for name in self.preparing:
            module.get_submodule(name).prepared_step = True
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
        params = [params[name] for name, _ in self.model.named_parameters()]
        shaped = [to_model_shape(p, q) for p, q in zip(params, self.params, strict=True)]
        return _Replica(module, params, shaped, [buffers[name] for name, _ in self.model.named_buffers()])

    def __enter__(self) -> ShardedStep:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def step(self, x: torch.Tensor, targets: Sequence[torch.Tensor],
             loss_fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``loss_fn(logits, *targets)`` is a shard's mean loss; returns (batch mean loss, logits)."""
        bounds = shard_bounds(len(x), self.shards)
        self.steps += 1
        while len(self.stashes) < len(bounds):
            self.stashes.append([torch.empty_like(b) for b in self.buffers])
        with torch.no_grad():
            for name in self.preparing:
                self.model.get_submodule(name).prepare_step()
        if self.lifted:
            x = x.unsqueeze(2)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)

        def run(i: int) -> _ShardResult:
            start, stop = bounds[i]
            return self._shard(i, x[start:stop], [t[start:stop] for t in targets], loss_fn,
                               (stop - start) / len(x))

        results: Sequence[_ShardResult] = map_in_order(run, len(bounds), self.threads, self.pool)
        with torch.no_grad():
            for j, p in enumerate(self.params):
                p.grad = _ordered_sum([r.grads[j] for r in results if r.grads[j] is not None])
            self._merge_buffers(results)
            loss = _ordered_sum([r.loss for r in results])
        return loss, torch.cat([r.logits for r in results])

    def _shard(self, index: int, x: torch.Tensor, targets: list[torch.Tensor],
               loss_fn: Callable[..., torch.Tensor], weight: float) -> _ShardResult:
        replica = self.replicas.get()
        try:
            params, buffers = replica.params, replica.buffers
            self._sync(replica)
            versions = [b._version for b in buffers]
            for p in params:
                p.grad = None
            logits = replica.module(x)
            loss = loss_fn(logits, *targets) * weight
            loss.backward()
            moved = {i for i, (b, v) in enumerate(zip(buffers, versions, strict=True)) if b._version != v}
            changed = replica.changed = sorted({i for g in self.groups if not moved.isdisjoint(g) for i in g})
            if self.steps == 1:
                self._check_unchanged(buffers, changed)
            stash, kept = self.stashes[index], list(self.buffers)
            _copy([stash[i] for i in changed], [buffers[i] for i in changed])
            for i in changed:
                kept[i] = stash[i]
            return _ShardResult(loss.detach(), logits.detach(),
                                [None if p.grad is None else to_model_shape(p.grad, q)
                                 for p, q in zip(params, self.params, strict=True)],
                                kept, frozenset(changed))
        finally:
            self.replicas.put(replica)

    def _check_unchanged(self, buffers: list[torch.Tensor], changed: list[int]) -> None:
        """On the first step: the buffers of the modules left unchanged by version kept their values."""
        for i, (name, b) in enumerate(self.model.named_buffers()):
            if i not in changed and not torch.equal(buffers[i], b):
                raise ShardingError(f"buffer '{name}' changes in training without an in-place operation "
                                    f"(through .data?): sharded training cannot see it")

    def _sync(self, replica: _Replica) -> None:
        """Give ``replica`` the model's parameters and buffers: all of them at a new step (the model
        changes between steps only), else the buffers its previous shard changed."""
        if replica.step != self.steps:
            _copy(replica.shaped + replica.buffers, self.params + self.buffers)
            replica.step = self.steps
        else:
            _copy([replica.buffers[i] for i in replica.changed], [self.buffers[i] for i in replica.changed])

    def _merge_buffers(self, results: Sequence[_ShardResult]) -> None:
        changed = frozenset().union(*(r.changed for r in results))
        for merge, positions in self.mergers:
            if not changed.isdisjoint(positions.values()):
                merge([{name: r.buffers[i] for name, i in positions.items()} for r in results])
        for i, name in self.unmerged:
            if i in changed and not all(torch.equal(r.buffers[i], self.buffers[i]) for r in results):
                raise ShardingError(f"buffer '{name}' changes in training and its module has no "
                                    f"merge_shard_buffers(): sharded training cannot merge it")


def _copy(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``targets[i].copy_(sources[i])`` for all ``i``, in one call."""
    if targets:
        with torch.no_grad():
            torch._foreach_copy_(targets, sources)


def _ordered_sum(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """t0 + t1 + ... in this order (None for no tensors)."""
    if not tensors:
        return None
    total = tensors[0].clone()
    for t in tensors[1:]:
        total += t
    return total


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def _merge_batchnorm(module: nn.modules.batchnorm._BatchNorm) -> Callable[[list[dict]], None]:
    def merge(shards: list[dict[str, torch.Tensor]]) -> None:
        for name in ("running_mean", "running_var"):
            if getattr(module, name, None) is not None:
                getattr(module, name).copy_(_ordered_sum([s[name] for s in shards]) / len(shards))
        if getattr(module, "num_batches_tracked", None) is not None:
            module.num_batches_tracked.add_(1)

    return merge


def _mergers(model: nn.Module) -> list[tuple[nn.Module, Callable[[list[dict]], None]]]:
    """(module, merge function) for every module whose buffers a training forward may change."""
    out = []
    for m in model.modules():
        if hasattr(m, "merge_shard_buffers"):
            out.append((m, m.merge_shard_buffers))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out.append((m, _merge_batchnorm(m)))
    return out
