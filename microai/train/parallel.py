"""Data-parallel training steps whose numbers do not depend on the number of threads.

PyTorch's CPU kernels split their reductions (a convolution's weight gradient, a sum) between
its intra-op threads, so the same seed gives different weights with 1 or 2 threads. Here the
numerics are fixed instead: every batch is cut into ``shards`` slices (a hyper-parameter, like the
batch size); each slice's loss and gradients are computed with one intra-op thread on a replica
of the model, in this process or, with ``threads`` > 1, by that many worker processes
(``microai.train.workers``), and the gradients are summed on the model in shard order. ``threads``
only changes how fast this goes.

Models with 2D convolutions train in the channels-last memory format (about twice as fast on CPU for the
paper's image models; like the shard count, a fixed choice). Models with 1D convolutions train lifted to
2D (``microai.train.lift``) in the same format, when they can be (a replica is the model's native twin,
``microai.train.twin``). The replicas' convolutions (stride 1), linear layers and max poolings run on
MicroAI's own kernels (``microai.train.native``): on a shard's few dozen examples, PyTorch's oneDNN
calls cost more in set-up than in arithmetic. With one thread, a replica whose every layer computes each
shard as the shard alone would (``microai.train.shard.examples_independent``: the native layers, and the
QAT quantizers of per-layer formats, which quantize each shard's slice in that shard's format; no batch
norm or dropout) computes all shards of a batch of up to ``ONE_PASS_MAX_VALUES`` input values in one
pass, its native layers keeping each shard's kernel gradients apart: the same bits as shard by shard,
with one pass's per-operation cost instead of one per shard. With more threads, such a replica's steps
may still be faster in one pass, its native kernels sharing each call's work between ``threads`` threads
(``microai.train.native.kernel_threads``: the examples of a convolution, the shards of a kernel
gradient), than spread over the worker processes (a small batch, whose shards cost the workers more in
exchanges and per-shard overhead than they share in arithmetic): the first steps try both schedules
(``ScheduleTrial``) and the faster one is kept. The bits are the same either way.

State that a forward pass changes is merged the same way after every step: each shard starts from the
model's buffers, and the model then takes BatchNorm running statistics averaged over the shards, or
what a module's ``merge_shard_buffers(list of per-shard buffer dicts)`` computes (the QAT quantizers:
the largest range). A replica is given the model's parameters and buffers once per step; between two
shards it runs, only the buffers of the modules its last shard changed are restored, and only those
are kept for the merge (a module none of whose buffers a shard changed is not merged). A module counts
as changed when the version counter of one of its buffers moved (an in-place update: BatchNorm's
``num_batches_tracked``, a quantizer's ``fill_``); the first step checks that the buffers of every
other module kept their values. One-pass steps after the first (so checked) run on a second replica
whose buffers are the model's own (``InPlaceRunner``), when every module with buffers has a merge
rule: the pass leaves in them what the merge would, with no copies. BatchNorm normalises each shard
with its own statistics (ghost batch norm). Work that depends on the parameters alone is done once per
step: a module whose ``prepares_steps`` is true has ``prepare_step()`` called on the model, without
gradients, before the shards, and its replicas have ``prepared_step = True``: they read what it
prepared from their buffers, and the parameters its ``prepared_parameters()`` pairs with buffers
(``[(parameter, buffer)]``) are given those buffers' values instead of their own (QAT quantizes its
kernels and biases this way: replicas compute with the quantized values, and the gradients of the
kernels and biases are the straight-through ones).
A model with dropout runs its shards one after another in this process, since its random draws come
from torch's global generator. Inference (``inference``) spreads chunks over threads: without
gradients, they hold the interpreter lock less.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from time import perf_counter

import torch
from torch import nn

from microai.train.lift import to_model_shape
from microai.train.memory import keep_freed_memory
from microai.train.native import kernel_threads
from microai.train.shard import (
    InPlaceRunner,
    Replica,
    Shard,
    ShardingError,
    ShardResult,
    ShardRunner,
    copy_all,
    examples_independent,
    share_buffers,
)
from microai.train.twin import native_twin
from microai.train.workers import WorkerPool, workers_available

__all__ = ["MIN_SHARD", "ScheduleTrial", "ShardedStep", "ShardingError", "default_threads", "inference",
           "map_in_order", "shard_bounds", "single_threaded_kernels"]

#: A shard needs two examples at least (batch norm cannot train on one).
MIN_SHARD = 2
#: The largest batch (input values) whose shards one thread computes in one pass. One pass saves
#: per-operation cost, which matters on small shards; a larger batch's activations, all alive at
#: once, no longer stay in cache (GTSRB shape, QAT, 512 examples in 8 shards: 261 ms a step in one
#: pass, 200 ms shard by shard). The bits are the same either way.
ONE_PASS_MAX_VALUES = 1 << 20

WORKERS, ONE_PASS = "worker processes", "one pass"


class ScheduleTrial:
    """Which schedule computes the steps of a ShardedStep with worker processes faster, when its replica
    can also compute them in one pass in the training process: the first ``length = 2 * (warmup +
    timed)`` such steps alternate between the workers and one pass (so that both run as warm as the
    other); the schedule with the shorter median wall-clock time over its last ``timed`` steps (its
    first ``warmup`` are not counted: the workers start, caches fill) is kept, the workers when tied.
    Only speed depends on the choice."""

    def __init__(self, warmup: int = 2, timed: int = 8) -> None:
        self.warmup, self.timed = warmup, timed
        self.seconds: dict[str, list[float]] = {WORKERS: [], ONE_PASS: []}
        self.steps = 0
        self.choice: str | None = None

    @property
    def length(self) -> int:
        """The steps the trial takes."""
        return 2 * (self.warmup + self.timed)

    def next(self) -> str:
        """The schedule of the next step."""
        if self.choice is not None:
            return self.choice
        return (WORKERS, ONE_PASS)[self.steps % 2]

    def record(self, schedule: str, seconds: float) -> None:
        """A step of ``schedule`` (what :meth:`next` said) took ``seconds``."""
        if self.choice is not None:
            return
        if self.steps >= 2 * self.warmup:
            self.seconds[schedule].append(seconds)
        self.steps += 1
        if self.steps == self.length:
            self.choice = min(self.seconds, key=lambda k: statistics.median(self.seconds[k]))


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


def map_in_order(fn: Callable[[int], object], count: int, threads: int) -> list:
    """``[fn(0), ..., fn(count - 1)]`` computed by ``threads`` threads with single-threaded kernels."""
    with single_threaded_kernels():
        if threads <= 1 or count <= 1:
            return [fn(i) for i in range(count)]
        with ThreadPoolExecutor(min(threads, count)) as pool:
            return list(pool.map(fn, range(count)))


def inference(model: nn.Module, x: torch.Tensor, chunk: int, threads: int) -> torch.Tensor:
    """``model(x)`` without gradients, in chunks of ``chunk`` examples spread over ``threads`` workers."""
    starts = list(range(0, len(x), chunk))

    def run(i: int) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            return model(x[starts[i]:starts[i] + chunk])

    return torch.cat(map_in_order(run, len(starts), threads))


class ShardedStep:
    """Sets the model's ``.grad`` to the gradient of a batch's mean loss, summed over fixed shards.

    See the module docstring. With ``threads`` > 1, this process and ``threads - 1`` worker processes
    (``microai.train.workers``) compute the shards, each on its own replica of ``model``, unless
    ``trial`` finds one pass in this process faster. Use it as a context manager (the workers stop at
    the end).
    """

    def __init__(self, model: nn.Module, shards: int, threads: int) -> None:
        keep_freed_memory()
        self.model = model
        self.shards = shards
        self.params = list(model.parameters())
        self.buffers = list(model.buffers())
        self.buffer_names = [name for name, _ in model.named_buffers()]
        #: qualified names of the modules that prepare every step
        self.preparing = [name for name, m in model.named_modules() if getattr(m, "prepares_steps", False)]
        index = {id(b): i for i, b in enumerate(self.buffers)}
        #: (merge function, {buffer name in its module: position in self.buffers}) per stateful module
        self.mergers = [(merge, {name: index[id(b)] for name, b in module.named_buffers(recurse=False)})
                        for module, merge in _mergers(model)]
        merged = {i for _, positions in self.mergers for i in positions.values()}
        self.unmerged = [(i, name) for i, name in enumerate(self.buffer_names) if i not in merged]
        #: positions in self.buffers of each module's own buffers: a shard changes them together
        groups = [group for m in model.modules()
                  if (group := [index[id(b)] for b in m.buffers(recurse=False)])]
        twin = native_twin(model)
        self.input = twin.input
        replica = self._replica(twin.module)
        self.runner = ShardRunner(replica, self.params, self.buffers, groups, self.buffer_names,
                                  self._prepared_parameters())
        self.threads = 1 if _has_dropout(model) or not workers_available() else max(1, min(threads, shards))
        #: whether the replica can compute the shards of a step in one pass (see ShardRunner.run_together)
        self.together = examples_independent(replica.module)
        #: one-pass steps so far, and the runner of those after the first (None: not made yet)
        self.passes = 0
        self.in_place: InPlaceRunner | None = None
        #: with workers, whether they or one pass compute such steps faster
        self.trial = ScheduleTrial()
        self.workers: WorkerPool | None = None
        self.steps = 0
        #: per shard index, the tensors that keep the replica's buffers after that shard for the merge
        self.stashes: list[list[torch.Tensor]] = []

    def _prepared_parameters(self) -> dict[int, int]:
        """{position in self.params: position in self.buffers} of the parameters replicas take from a
        buffer (the preparing modules' ``prepared_parameters()``)."""
        params = {id(p): i for i, p in enumerate(self.params)}
        buffers = {id(b): i for i, b in enumerate(self.buffers)}
        return {params[id(p)]: buffers[id(b)] for name in self.preparing
                for p, b in getattr(self.model.get_submodule(name), "prepared_parameters", list)()}

    def _replica(self, module: nn.Module, sharing: bool = False) -> Replica:
        """``module`` (a native twin of the model) made a replica; ``sharing``: with the model's buffers (then
        none is listed in the replica's: there is nothing to give it at a step)."""
        module.train()
        for name in self.preparing:
            module.get_submodule(name).prepared_step = True
        if sharing:
            share_buffers(module, self.model)
        params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
        params = [params[name] for name, _ in self.model.named_parameters()]
        shaped = [to_model_shape(p, q) for p, q in zip(params, self.params, strict=True)]
        listed = [] if sharing else [buffers[name] for name in self.buffer_names]
        return Replica(module, params, shaped, listed)

    def __enter__(self) -> ShardedStep:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.workers is not None:
            self.workers.close()

    def step(self, x: torch.Tensor, targets: Sequence[torch.Tensor],
             loss_fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``loss_fn(logits, *targets)`` is a shard's mean loss; returns (batch mean loss, logits).

        With worker processes, ``loss_fn`` is sent to them: it must be picklable (a module-level
        function, or a ``functools.partial`` of one)."""
        began = perf_counter()
        bounds = shard_bounds(len(x), self.shards)
        self.steps += 1
        with torch.no_grad():
            for name in self.preparing:
                self.model.get_submodule(name).prepare_step()
        x = self.input(x)
        shards = [Shard(i, start, stop, [t[start:stop] for t in targets], (stop - start) / len(x))
                  for i, (start, stop) in enumerate(bounds)]
        together = self.together and len(shards) > 1 and x.numel() <= ONE_PASS_MAX_VALUES
        schedule = self._schedule(together) if self.threads > 1 and len(shards) > 1 else None
        results = None
        if schedule == WORKERS:
            results = self._pool(x).run(self.steps, x, shards, loss_fn, lambda s: self._run(s, x, loss_fn))
        elif together:
            with kernel_threads(self.threads):
                results = self._run_together(shards, x, loss_fn)
        if results is None:
            results = [self._run(shard, x, loss_fn) for shard in shards]
        with torch.no_grad():
            for j, p in enumerate(self.params):
                grads = [r.grads[j] for r in results if r.grads[j] is not None]
                # a single result is this process's: its gradients are this step's own tensors (a worker's
                # are its shared buffers, written again at the next step)
                p.grad = grads[0] if len(results) == 1 and grads else _ordered_sum(grads)
            self._merge_buffers(results)
            loss = _ordered_sum([r.loss for r in results])
        if schedule is not None and together and self.together:
            self.trial.record(schedule, perf_counter() - began)
        return loss, torch.cat([r.logits for r in results])

    def _schedule(self, together: bool) -> str:
        """How a step with workers runs: with them, or in one pass when the replica can and the trial
        finds it faster (the workers then stop)."""
        if not together:
            return WORKERS
        schedule = self.trial.next()
        if schedule == ONE_PASS and self.trial.choice == ONE_PASS and self.workers is not None:
            self.workers.close()
            self.workers = None
        return schedule

    def _run_together(self, shards: list[Shard], x: torch.Tensor,
                      loss_fn: Callable[..., torch.Tensor]) -> list[ShardResult] | None:
        """All shards in one pass of this process's replica, as one result (None, and never again, when
        the pass cannot keep the shards' gradients apart: a layer called twice...). The pass leaves in
        the replica's buffers what merging the shards' buffers would (see ShardRunner.run_together):
        they are copied into the model's, and the result has nothing left to merge. After a first pass
        so checked, a replica that shares the model's buffers runs the next ones, when every buffer
        that changes has a merge rule (the pass writes them in place)."""
        stash = self._stash(0)
        runner = self.runner if self.passes == 0 or self.unmerged else self._in_place_runner()
        with single_threaded_kernels():
            outcome = runner.run_together(self.steps, shards, x, loss_fn, stash)
        if outcome is None:
            if runner is self.in_place:  # its pass wrote into the model's buffers: the step cannot be redone
                raise ShardingError("a one-pass step could not keep its shards apart after an earlier one "
                                    "could (a layer ran twice, or on PyTorch's kernels)")
            self.together = False
            return None
        self.passes += 1
        loss, logits, grads, changed = outcome
        self._check_unmerged(frozenset(changed), [stash])
        with torch.no_grad():
            copy_all([self.buffers[i] for i in changed], [stash[i] for i in changed])
        return [ShardResult(loss, logits, grads, self.buffers, frozenset())]

    def _in_place_runner(self) -> InPlaceRunner:
        """The runner of one-pass steps on a replica with the model's buffers (made at the first call)."""
        if self.in_place is None:
            replica = self._replica(native_twin(self.model).module, sharing=True)
            self.in_place = InPlaceRunner(replica, self.params, self.buffers, [], self.buffer_names,
                                          self._prepared_parameters())
        return self.in_place

    def _run(self, shard: Shard, x: torch.Tensor, loss_fn: Callable[..., torch.Tensor]) -> ShardResult:
        """A shard computed in this process."""
        stash = self._stash(shard.index)
        with single_threaded_kernels():
            loss, logits, grads, changed = self.runner.run(self.steps, shard, x[shard.start:shard.stop],
                                                           loss_fn, stash)
        return ShardResult.of(loss, logits, grads, self.buffers, stash, changed)

    def _stash(self, index: int) -> list[torch.Tensor]:
        """The tensors that keep the replica's buffers after shard ``index`` for the merge."""
        while len(self.stashes) <= index:
            self.stashes.append([torch.empty_like(b) for b in self.buffers])
        return self.stashes[index]

    def _pool(self, x: torch.Tensor) -> WorkerPool:
        """The worker processes, started (again) when the batch outgrows their input buffer."""
        if self.workers is None or not self.workers.fits(x):
            if self.workers is not None:
                self.workers.close()
            self.workers = WorkerPool(self.runner, self.threads - 1, self.shards, x)
        return self.workers

    def _merge_buffers(self, results: Sequence[ShardResult]) -> None:
        changed = frozenset().union(*(r.changed for r in results))
        for merge, positions in self.mergers:
            if not changed.isdisjoint(positions.values()):
                merge([{name: r.buffers[i] for name, i in positions.items()} for r in results])
        self._check_unmerged(changed, [r.buffers for r in results])

    def _check_unmerged(self, changed: frozenset[int], kept: list[list[torch.Tensor]]) -> None:
        """An error for a changed buffer no module merges whose value in one of the shards' ``kept``
        buffers is not the model's."""
        for i, name in self.unmerged:
            if i in changed and not all(torch.equal(buffers[i], self.buffers[i]) for buffers in kept):
                raise ShardingError(f"buffer '{name}' changes in training and its module has no "
                                    f"merge_shard_buffers(): sharded training cannot merge it")


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
