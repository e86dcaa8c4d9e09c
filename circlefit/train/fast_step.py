"""The full-batch phase-1 step over static buffers: run eagerly anywhere, or replayed as one CUDA graph.

Everything the step reads or writes is allocated once, so the step can be captured in a CUDA
graph and replayed with no host work but the launch, and no host sync:
- the full batch, already on the device;
- one flat parameter and one flat gradient buffer; the module's parameters are views into
  them, so a single-tensor Adam update covers the whole net in a few kernels;
- the learning rate and Adam's beta1 (OneCycle cycles both) as a device table of exactly the
  values the live scheduler sets before each step, read through a device step counter;
- a window of the last losses, shifted on the device and read by the host once per evaluation.
The optimizer is torch's own Adam/AdamW with a tensor lr and beta1 (`capturable=True` on CUDA).
Run eagerly (`capture=False`) the same step is what the CPU tests check against the plain loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from circlefit.config import PARAMS_FILE, GradientConfig
from circlefit.errors import DeviceError

__all__ = ["GRAPH_OPTIMIZERS", "FastStep", "StepMode", "choose_mode", "flatten_params", "schedule_table"]

log = logging.getLogger(__name__)

StepMode = Literal["eager", "static", "graph"]  # gradient.py's loop | FastStep eagerly | FastStep as a CUDA graph
GRAPH_OPTIMIZERS = ("adam", "adamw")  # their single-tensor update takes a tensor beta1 without a host sync
WARMUP_STEPS = 3  # eager steps on a side stream before capture: lazy optimizer state, cuBLAS handles
ALIGN = 64  # elements: each parameter's view starts 256-byte aligned, as its own allocation would

MakeOptimizer = Callable[[list[nn.Parameter], bool], torch.optim.Optimizer]  # (params, capturable)
MakeSchedule = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler | None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def graph_blockers(cfg: GradientConfig, device: torch.device, full_batch: bool, distributed: bool = False) -> list[str]:
    """Why the phase-1 step cannot be a CUDA graph here (empty: it can)."""
    reasons = []
    if distributed:
        reasons.append("training is distributed (DDP averages gradients in its own buckets; steps run eagerly)")
    if device.type != "cuda":
        reasons.append(f"the device is {device.type} (CUDA graphs need CUDA)")
    if not full_batch:
        reasons.append(
            f"train.gradient.batch_size {cfg.batch_size} makes mini-batches (the captured step is full-batch)"
        )
    if cfg.optimizer not in GRAPH_OPTIMIZERS:
        reasons.append(
            f"train.gradient.optimizer is {cfg.optimizer} (the captured step supports {', '.join(GRAPH_OPTIMIZERS)})"
        )
    return reasons


def choose_mode(
    cfg: GradientConfig, device: torch.device, full_batch: bool, source: str = PARAMS_FILE, distributed: bool = False
) -> StepMode:
    """`never` → eager; `auto` → graph where possible, else eager; `always` → graph, or an error naming `source`.

    "static" (the graph's step run eagerly) is what a failed capture falls back to (FastStep).
    """
    if cfg.cuda_graph == "never" or cfg.epochs == 0:
        return "eager"
    blockers = graph_blockers(cfg, device, full_batch, distributed=distributed)
    if not blockers:
        return "graph"
    if cfg.cuda_graph == "always":
        raise DeviceError(
            f"{source}: train.gradient.cuda_graph is 'always' but {'; '.join(blockers)}; set it to auto or never"
        )
    if device.type == "cuda":
        log.info("phase 1 runs eagerly: %s", "; ".join(blockers))
    return "eager"


def schedule_table(make_optimizer: MakeOptimizer, make_schedule: MakeSchedule, steps: int) -> list[tuple[float, float]]:
    """(lr, beta1) before each of `steps` steps and after the last, as the live scheduler sets them.

    The scheduler runs on a shadow optimizer over one dummy parameter, so what it writes into
    the param group (OneCycle rewrites `betas` as Python floats every step) is recorded too.
    """
    shadow = make_optimizer([nn.Parameter(torch.zeros(1))], False)
    sched = make_schedule(shadow)
    shadow.step()  # no gradients: a no-op that satisfies the scheduler's step-order check
    group = shadow.param_groups[0]
    table = []
    for i in range(steps + 1):
        table.append((float(group["lr"]), float(group["betas"][0])))
        if sched is not None and i < steps:
            sched.step()
    return table


def flatten_params(params: Sequence[nn.Parameter]) -> nn.Parameter:
    """One flat parameter that backs every given parameter (values unchanged), with a flat `.grad`.

    Each parameter becomes a view into it and its `.grad` a view into the flat gradient, which
    backward then accumulates into in place: zero the flat gradient before each backward. The
    padding between views stays zero (zero gradient: Adam and weight decay leave it at zero).
    """
    offsets = [0]
    for p in params:
        offsets.append(offsets[-1] + -(-p.numel() // ALIGN) * ALIGN)
    first = params[0]
    flat = nn.Parameter(torch.zeros(offsets[-1], dtype=first.dtype, device=first.device))
    flat.grad = torch.zeros_like(flat)
    for p, start in zip(params, offsets, strict=False):
        view = flat.data[start : start + p.numel()].view_as(p)
        view.copy_(p.detach())
        p.data = view
        p.grad = flat.grad[start : start + p.numel()].view_as(p)
    return flat


def _feed_hyperparameters(opt: torch.optim.Optimizer, hyper: torch.Tensor) -> None:
    """Point lr and beta1 at the device scalars that each step fills from the schedule table."""
    for group in opt.param_groups:
        group["lr"] = hyper[0, 0]
        group["betas"] = (hyper[0, 1], float(group["betas"][1]))
        group["foreach"] = False  # foreach lerp would read a tensor beta1 through a host sync


class FastStep:
    """Phase-1 full-batch steps over static buffers; `capture=True` (CUDA) replays them as one graph.

    After construction the net's parameters are views into one flat parameter, updated in place.
    """

    def __init__(
        self,
        net: nn.Module,
        loss_fn: LossFn,
        x: torch.Tensor,
        y: torch.Tensor,
        make_optimizer: MakeOptimizer,
        make_schedule: MakeSchedule,
        steps: int,
        window: int,
        capture: bool,
        required: bool = False,
    ) -> None:
        device = x.device
        self._loss_fn, self._x, self._y = loss_fn, x, y
        table = schedule_table(make_optimizer, make_schedule, steps)
        self._lrs = [lr for lr, _ in table]
        self._table = torch.tensor(table, dtype=torch.float32, device=device)  # [steps + 1, (lr, beta1)]
        self._hyper = torch.zeros(1, 2, dtype=torch.float32, device=device)  # this step's row of the table
        self._t = torch.zeros(1, dtype=torch.long, device=device)  # device-side step counter
        self._window = torch.full((window,), math.nan, device=device)
        self._params = list(net.parameters())
        self._flat = flatten_params(self._params)
        self._grad: torch.Tensor = self._flat.grad  # type: ignore[assignment]
        # Capturable on CUDA even when not capturing: its update never reads a device scalar on
        # the host (the plain one syncs on the tensor lr); CPU has only the plain one.
        self.optimizer = make_optimizer([self._flat], device.type == "cuda")
        _feed_hyperparameters(self.optimizer, self._hyper)
        self._capture, self._required = capture, required
        self._side: torch.cuda.Stream | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._loss = torch.zeros((), device=device)
        self.steps = 0
        self._drained = 0

    @property
    def captured(self) -> bool:
        return self._graph is not None

    @property
    def lr(self) -> float:
        """The lr set for the next step: what the eager loop's param group holds at this point."""
        return self._lrs[self.steps]

    def body(self) -> torch.Tensor:
        """One step, eagerly: (lr, beta1) of step t, forward, backward, update, shift the loss in."""
        torch.index_select(self._table, 0, self._t, out=self._hyper)
        self._grad.zero_()
        loss = self._loss_fn(self._x, self._y)
        loss.backward()
        self.optimizer.step()
        loss = loss.detach()
        self._window.copy_(torch.cat((self._window[1:], loss.reshape(1))))
        self._t.add_(1)
        return loss

    def step(self) -> torch.Tensor:
        """Run the next step; its loss (with a graph, the same static tensor every step)."""
        if self.steps >= len(self._lrs) - 1:
            raise RuntimeError(f"the schedule table covers {len(self._lrs) - 1} steps; all were run")
        if self._graph is not None:
            self._graph.replay()
        elif not self._capture:
            self._loss = self.body()
        elif self.steps < WARMUP_STEPS:
            self._loss = self._warmup()
        else:
            self._loss = self._capture_or_fall_back()
        self.steps += 1
        return self._loss

    def drain(self) -> tuple[torch.Tensor, list[float]]:
        """Losses and lrs of the steps since the last drain; call at least every `window` steps."""
        count, size = self.steps - self._drained, self._window.numel()
        if count > size:
            raise RuntimeError(f"{count} steps since the last drain overflow the loss window of {size}")
        losses = self._window[size - count :].clone()
        lrs = self._lrs[self._drained : self.steps]
        self._drained = self.steps
        return losses, lrs

    def close(self) -> None:
        """Give each parameter its own storage back (values kept) and drop the graph and buffers."""
        for p in self._params:
            p.data = p.data.clone()
            p.grad = None
        self._graph = None
        self.optimizer.state.clear()

    def _warmup(self) -> torch.Tensor:
        """A real step, on a side stream as CUDA graph capture wants its warmup."""
        if self._side is None:
            self._side = torch.cuda.Stream(self._x.device)
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            loss = self.body()
        torch.cuda.current_stream().wait_stream(self._side)
        return loss

    def _capture_or_fall_back(self) -> torch.Tensor:
        """Capture the step (recording runs nothing), then replay it; on failure, step eagerly."""
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph):
                loss = self.body()
        except Exception as e:  # whatever broke capture, nothing of the step has run yet
            torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
            torch.cuda.synchronize()
            if self._required:
                raise DeviceError(f"train.gradient.cuda_graph is 'always' but capturing the step failed: {e}") from e
            log.warning("CUDA graph capture of the training step failed; continuing eagerly: %s", e)
            self._capture = False
            return self.body()
        self._graph = graph
        graph.replay()
        return loss
