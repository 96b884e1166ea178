"""One shard of a training step (``microai.train.parallel``), computed on a replica of the model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from microai.train.lift import composes_submodules, to_model_shape
from microai.train.native import NativeConv2d, NativeLinear, NativeMaxPool2d, shard_pass

#: (loss, logits, gradients or None, positions of the buffers it changed) of a shard
Outcome = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None], list[int]]


class ShardingError(RuntimeError):
    """A model whose per-step state cannot be merged across shards."""


@dataclass
class Replica:
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
class ShardResult:
    loss: torch.Tensor
    logits: torch.Tensor
    grads: list[torch.Tensor | None]
    #: the shard's buffers: its own copy at the positions in ``changed``, the model's elsewhere
    buffers: list[torch.Tensor]
    changed: frozenset[int]

    @classmethod
    def of(cls, loss: torch.Tensor, logits: torch.Tensor, grads: list[torch.Tensor | None],
           buffers: list[torch.Tensor], stash: list[torch.Tensor], changed: Iterable[int]) -> ShardResult:
        """The result whose buffers are ``stash`` at the positions in ``changed``, ``buffers`` (the
        model's) elsewhere."""
        kept = list(buffers)
        for i in changed:
            kept[i] = stash[i]
        return cls(loss, logits, grads, kept, frozenset(changed))


@dataclass
class Shard:
    """What a shard computes: ``loss_fn(replica(x[start:stop]), *targets) * weight``."""

    index: int
    start: int
    stop: int
    targets: list[torch.Tensor]
    weight: float


class ShardRunner:
    """Computes shards on a replica, reading the step's parameters and buffers from ``params`` and
    ``buffers`` (the model's own, or their shared-memory copies in a worker process); the parameter at
    position ``i`` takes the values of ``buffers[prepared[i]]`` where ``prepared`` has ``i``."""

    def __init__(self, replica: Replica, params: list[torch.Tensor], buffers: list[torch.Tensor],
                 groups: list[list[int]], buffer_names: list[str], prepared: dict[int, int]) -> None:
        self.replica = replica
        self.params = params
        self.buffers = buffers
        self.groups = groups
        self.buffer_names = buffer_names
        self.prepared = prepared
        #: what the replica's parameters are given at every step
        self.param_values = [buffers[prepared[i]] if i in prepared else p for i, p in enumerate(params)]

    def reading(self, params: list[torch.Tensor], buffers: list[torch.Tensor]) -> ShardRunner:
        """A runner on the same replica that reads the step's parameters and buffers from other tensors
        (a worker process's shared-memory copies)."""
        return ShardRunner(self.replica, params, buffers, self.groups, self.buffer_names, self.prepared)

    def run(self, step: int, shard: Shard, x: torch.Tensor, loss_fn: Callable[..., torch.Tensor],
            stash: list[torch.Tensor]) -> Outcome:
        """(loss, logits, gradients with the model's shapes, changed buffer positions); the changed
        buffers are copied to ``stash``."""
        versions = self._start(step)
        logits = self.replica.module(x)
        loss = loss_fn(logits, *shard.targets) * shard.weight
        loss.backward()
        return loss.detach(), logits.detach(), self._grads(), self._keep_changed(step, versions, stash)

    def run_together(self, step: int, shards: list[Shard], x: torch.Tensor,
                     loss_fn: Callable[..., torch.Tensor], stash: list[torch.Tensor]) -> Outcome | None:
        """The outcome of all ``shards`` of ``x`` at once, with the bits of :meth:`run` on each and the
        sums of ``ShardedStep.step``: a single pass in which the native layers keep the shards' kernel
        gradients apart (for a replica that :func:`examples_independent`), and the modules with state
        (the QAT quantizers) keep what merging the shards' states would (see ``ShardPass``). None when
        the pass could not keep the shards apart (a layer called twice, or on PyTorch's kernels: see
        ``ShardPass.per_shard``)."""
        versions = self._start(step)
        with shard_pass([(shard.start, shard.stop) for shard in shards]) as current:
            logits = self.replica.module(x)
        if not current.per_shard:
            self.replica.step = 0  # the pass may have changed its buffers: all of them are given again
            return None
        loss = None
        for shard in shards:
            term = loss_fn(logits[shard.start:shard.stop], *shard.targets) * shard.weight
            loss = term if loss is None else loss + term
        loss.backward()
        return loss.detach(), logits.detach(), self._grads(), self._keep_changed(step, versions, stash)

    def _start(self, step: int) -> list[int]:
        """Give the replica the step's state and clear its gradients; return its buffers' versions."""
        self._sync(step)
        for p in self.replica.params:
            p.grad = None
        return [b._version for b in self.replica.buffers]

    def _keep_changed(self, step: int, versions: list[int], stash: list[torch.Tensor]) -> list[int]:
        """The positions of the buffers of the replica's modules one of whose buffers changed since
        ``versions``, their values copied to ``stash``."""
        buffers = self.replica.buffers
        moved = {i for i, (b, v) in enumerate(zip(buffers, versions, strict=True)) if b._version != v}
        changed = sorted({i for g in self.groups if not moved.isdisjoint(g) for i in g})
        self.replica.changed = changed
        if step == 1:
            self._check_unchanged(changed)
        copy_all([stash[i] for i in changed], [buffers[i] for i in changed])
        return changed

    def _grads(self) -> list[torch.Tensor | None]:
        """The replica's gradients with the model's shapes."""
        return [None if p.grad is None else to_model_shape(p.grad, q)
                for p, q in zip(self.replica.params, self.params, strict=True)]

    def _sync(self, step: int) -> None:
        """Give the replica the step's parameters and buffers: all of them at a new step (the model
        changes between steps only), else the buffers its previous shard changed."""
        replica = self.replica
        if replica.step != step:
            copy_all(replica.shaped + replica.buffers, self.param_values + self.buffers)
            replica.step = step
        else:
            changed = replica.changed
            copy_all([replica.buffers[i] for i in changed], [self.buffers[i] for i in changed])

    def _check_unchanged(self, changed: list[int]) -> None:
        """On the first step: the buffers of the modules left unchanged by version kept their values."""
        for i, (name, b) in enumerate(zip(self.buffer_names, self.buffers, strict=True)):
            if i not in changed and not torch.equal(self.replica.buffers[i], b):
                raise ShardingError(f"buffer '{name}' changes in training without an in-place operation "
                                    f"(through .data?): sharded training cannot see it")


class InPlaceRunner(ShardRunner):
    """Computes all the shards of a step in one pass (:meth:`run_together` only) on a replica whose
    buffers are the model's own (:func:`share_buffers`): what the pass leaves in them, which is what
    merging the shards' buffers would, is the model's at once. No buffer is copied to the replica and
    back at every step (a QAT model has three per quantizer: about 80 small copies a step)."""

    def run(self, *args: object) -> Outcome:
        raise TypeError("InPlaceRunner computes whole steps in one pass only (run_together)")

    def _sync(self, step: int) -> None:
        """Give the replica the step's parameters (its buffers are the model's, and it lists none)."""
        if self.replica.step != step:
            copy_all(self.replica.shaped, self.param_values)
            self.replica.step = step

    def _keep_changed(self, step: int, versions: list[int], stash: list[torch.Tensor]) -> list[int]:
        return []


def share_buffers(replica: nn.Module, model: nn.Module) -> None:
    """Make each buffer of ``replica`` (a copy of ``model``, possibly lifted to 2D, whose buffers keep
    their names) the tensor of the same name in ``model``."""
    buffers = dict(model.named_buffers(remove_duplicate=False))
    for prefix, module in replica.named_modules(remove_duplicate=False):
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = buffers[f"{prefix}.{name}" if prefix else name]


#: modules that compute each example on its own, with no state (exactly these classes: a subclass may
#: compute something else)
_PER_EXAMPLE = (NativeConv2d, NativeLinear, NativeMaxPool2d, nn.ReLU, nn.Identity)


def examples_independent(model: nn.Module) -> bool:
    """Whether ``model`` computes every shard of a batch as it would alone, so that several shards can be
    computed in one pass: the native layers compute each example on its own, a module that says
    ``per_shard`` (the QAT quantizers and layers) computes each shard of a ``shard_pass`` apart; a batch
    norm, a dropout or an unknown module may not."""
    return all(type(m) in _PER_EXAMPLE or (type(m) is nn.Flatten and m.start_dim == 1)
               or getattr(m, "per_shard", False) is True or composes_submodules(m) for m in model.modules())


def copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``targets[i].copy_(sources[i])`` for all ``i``, in one call."""
    if targets:
        with torch.no_grad():
            torch._foreach_copy_(targets, sources)
