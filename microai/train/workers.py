"""Worker processes that compute the shards of a training step (``microai.train.parallel``) in parallel.

Threads of one Python process share its interpreter lock, which the many small operations of a
step on a small model keep taking and releasing: with two threads, ResNetv1-6 trained on UCI-HAR
hardly faster than with one, and its QAT slower. Processes do not share it. The workers are forked
from the training process, so each inherits a private copy of the replica of the model, and the
tensors below, which live in shared memory: the step's parameters and buffers (written by the
training process before every step), the batch, and per shard its gradients and the buffers it
changed (written by the worker that computed it). Pipes carry the rest: shard bounds, targets and
the loss function out; loss, logits and which buffers changed back. Each worker computes with one
intra-op thread, so its numbers are those the training process would compute for that shard.
With ``threads`` threads of training, the training process computes shards itself beside
``threads - 1`` workers: shard ``i`` goes to ``i % threads``, 0 being the training process.
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import sys
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection

import torch

from microai.train.shard import Shard, ShardResult, ShardRunner, copy_all

#: how often a waiting training process checks that its workers are alive (seconds)
POLL_S = 1.0


class WorkerError(RuntimeError):
    """A worker process died, or the pool cannot be used."""


def workers_available() -> bool:
    """Whether this platform forks safely (Linux; macOS's system libraries do not support it, Windows
    has no fork): elsewhere shards run in the training process."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _shared_like(groups: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Contiguous tensors shaped like those of ``groups``, carved from one shared-memory block per dtype
    (a block is a file descriptor: one per tensor would exhaust them on a QAT model with 8 shards)."""
    sizes: dict[torch.dtype, int] = defaultdict(int)
    for t in itertools.chain.from_iterable(groups):
        sizes[t.dtype] += t.numel()
    blocks = {dtype: torch.zeros(size, dtype=dtype).share_memory_() for dtype, size in sizes.items()}
    offsets: dict[torch.dtype, int] = defaultdict(int)
    carved = []
    for group in groups:
        views = []
        for t in group:
            start = offsets[t.dtype]
            offsets[t.dtype] += t.numel()
            views.append(blocks[t.dtype][start:offsets[t.dtype]].view(t.shape))
        carved.append(views)
    return carved


class WorkerPool:
    """``workers`` forked processes computing, beside the training process, the shards of steps whose
    batches are shaped like ``x`` (at most ``len(x)`` examples, at most ``shards`` shards) with
    replicas of ``runner``'s."""

    def __init__(self, runner: ShardRunner, workers: int, shards: int, x: torch.Tensor) -> None:
        self.model_params, self.model_buffers = runner.params, runner.buffers
        shared = _shared_like([runner.params, runner.buffers] + [runner.params, runner.buffers] * shards)
        self.params, self.buffers = shared[:2]
        self.grads, self.stashes = shared[2::2], shared[3::2]
        self.x = torch.empty_like(x).share_memory_()
        child_runner = runner.reading(self.params, self.buffers)
        context = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.closed = False
        for w in range(workers):
            ours, theirs = context.Pipe()
            proc = context.Process(target=_serve, name=f"microai-shards-{w}", daemon=True,
                                   args=(theirs, child_runner, self.x, self.grads, self.stashes))
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)

    def fits(self, x: torch.Tensor) -> bool:
        return (not self.closed and x.shape[1:] == self.x.shape[1:] and len(x) <= len(self.x)
                and x.dtype == self.x.dtype)

    def run(self, step: int, x: torch.Tensor, shards: list[Shard], loss_fn: Callable[..., torch.Tensor],
            local: Callable[[Shard], ShardResult]) -> list[ShardResult]:
        """The results of ``shards`` of batch ``x`` (with the model's current parameters and buffers),
        in shard order. The training process computes its share with ``local`` meanwhile: shard ``i``
        goes to ``i % (workers + 1)``, where 0 is the training process."""
        copy_all(self.params + self.buffers, self.model_params + self.model_buffers)
        self.x[:len(x)].copy_(x)
        count = len(self.conns) + 1
        busy = [w for w in range(1, count) if shards[w::count]]
        try:
            for w in busy:  # numpy targets: tensors would travel through new shared-memory files
                tasks = [replace(s, targets=[t.numpy() for t in s.targets]) for s in shards[w::count]]
                self.conns[w - 1].send((step, tasks, loss_fn))
            results = {shard.index: local(shard) for shard in shards[::count]}
            for w in busy:
                for index, loss, logits, present, changed in self._receive(w - 1):
                    grads = [g if has else None for g, has in zip(self.grads[index], present, strict=True)]
                    results[index] = ShardResult.of(torch.from_numpy(loss), torch.from_numpy(logits), grads,
                                                    self.model_buffers, self.stashes[index], changed)
        except BaseException:
            self.close()  # replies left in the pipes would be read as the next step's
            raise
        return [results[shard.index] for shard in shards]

    def _receive(self, w: int) -> list[tuple]:
        conn, proc = self.conns[w], self.procs[w]
        while not conn.poll(POLL_S) and proc.is_alive():
            pass
        try:
            status, *payload = conn.recv()
        except EOFError:  # its end of the pipe closed: it exited
            proc.join(POLL_S)
            raise WorkerError(f"training worker process {proc.name} (pid {proc.pid}) died with exit code "
                              f"{proc.exitcode} (killed for lack of memory?)") from None
        if status == "error":
            error, trace = payload
            error.add_note(f"in training worker process {proc.name} (pid {proc.pid}):\n{trace}")
            raise error
        return payload[0]

    def close(self) -> None:
        """Stop the workers (those that do not stop within 5 s are terminated)."""
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:  # a worker that died
                pass
        for conn, proc in zip(self.conns, self.procs, strict=True):
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
            conn.close()


def _serve(conn: Connection, runner: ShardRunner, x: torch.Tensor, grads: list[list[torch.Tensor]],
           stashes: list[list[torch.Tensor]]) -> None:
    """A worker's loop: compute the shards it is sent until it is sent None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    torch.set_num_threads(1)
    torch.set_grad_enabled(True)
    while (message := _next(conn)) is not None:
        step, tasks, loss_fn = message
        try:
            replies = []
            for shard in tasks:
                shard.targets = [torch.from_numpy(t) for t in shard.targets]
                batch, stash = x[shard.start:shard.stop], stashes[shard.index]
                loss, logits, shard_grads, changed = runner.run(step, shard, batch, loss_fn, stash)
                present = [g is not None for g in shard_grads]
                copy_all([slot for slot, has in zip(grads[shard.index], present, strict=True) if has],
                         [g for g in shard_grads if g is not None])
                replies.append((shard.index, loss.numpy(), logits.numpy(), present, changed))
            conn.send(("ok", replies))
        except Exception as e:  # sent to the training process, which raises it
            trace = traceback.format_exc()
            try:
                conn.send(("error", e, trace))
            except Exception:  # an exception that does not pickle
                conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}"), trace))


def _next(conn: Connection) -> tuple | None:
    try:
        return conn.recv()
    except EOFError:  # the training process is gone
        return None

