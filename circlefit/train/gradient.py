"""train.method gradient: PyTorch's init, a first-order optimizer (`train.gradient`), then full-batch L-BFGS.

Reads as its phases over a small `_Run` state: initialize, `_first_order` (one epoch: `_eager_epoch`,
or the captured full-batch step of circlefit.train.fast_step), `_lbfgs`, finish. Repeatable for a
fixed device and thread count; under torchrun each rank trains on its shard (circlefit.train.distributed).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from circlefit.config import PARAMS_FILE, GradientConfig, ModelConfig, TrainConfig
from circlefit.data.normalize import Stats
from circlefit.errors import TrainingDiverged
from circlefit.model.network import CircleModel, build_model
from circlefit.numeric.mlp64 import Weights
from circlefit.train.distributed import Dist
from circlefit.train.fast_step import FastStep, choose_mode
from circlefit.train.result import CurveRow, Rows, TrainResult, summary

__all__ = ["train"]

log = logging.getLogger(__name__)
# Validation rows per forward pass: one pass over a large validation split holds its whole
# [rows, width] hidden tensor (twice, with its activation; rows × width × 4 bytes), chunks hold
# only this many rows' worth. Measured memory at scale: BENCHMARKS.md ("Growth"). At or below
# this many rows (the default data) the loss is one forward, so its value and dvc.lock do not change.
EVAL_ROWS = 65536


@dataclass
class _Tensors:
    x: torch.Tensor
    y: torch.Tensor
    xv: torch.Tensor
    yv: torch.Tensor


class _Best:
    """Best validation loss so far, its weights, and patience bookkeeping."""

    def __init__(self, net: nn.Module, cfg: GradientConfig) -> None:
        self.loss = math.inf
        self.step = 0
        self.state = copy.deepcopy(net.state_dict())
        self.bad = 0
        self.cfg = cfg

    def update(self, net: nn.Module, val: float, step: int) -> bool:
        """Record `val`; True when patience is exhausted (and early stopping is on)."""
        if val < self.loss * (1 - self.cfg.early_stopping.min_delta):
            self.loss, self.step, self.bad = val, step, 0
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return False
        self.bad += 1
        return 0 < self.cfg.early_stopping.patience <= self.bad


def _optimizer(cfg: GradientConfig, params: Iterator[nn.Parameter], capturable: bool) -> torch.optim.Optimizer:
    kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=0.9, **kw)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}[cfg.optimizer]
    return cls(params, capturable=capturable, **kw)


def _schedule(
    cfg: GradientConfig, opt: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.schedule == "constant" or total == 0:
        return None
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)


def _to_tensors(model: CircleModel, rows: Rows, device: torch.device) -> _Tensors:
    """Standardize with the model's own buffers (what inference will see), once, on device."""
    with torch.no_grad():
        tr = torch.from_numpy(np.ascontiguousarray(rows.train)).to(device)
        va = torch.from_numpy(np.ascontiguousarray(rows.val)).to(device)
        return _Tensors(
            model.standardize(tr[:, :2]),
            model.standardize_label(tr[:, 2:]),
            model.standardize(va[:, :2]),
            model.standardize_label(va[:, 2:]),
        )


def _check_finite(losses: torch.Tensor, first_step: int, lrs: list[float]) -> None:
    """One host sync per evaluation, yet the exact step of the first non-finite loss."""
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    i = int((~finite).nonzero()[0])
    raise TrainingDiverged(
        f"loss became {float(losses[i])} at step {first_step + i} (lr {lrs[i]:.3g}); "
        "lower train.gradient.lr or check the data; no model was written"
    )


class _Run:
    """One gradient training's state: the net and its DDP wrapper, the data, the best weights, the curve.

    The phases below share it; each step and evaluation goes through its methods, so the ranks'
    global sums (circlefit.train.distributed) and bf16 autocast are decided in one place.
    """

    def __init__(self, cfg: GradientConfig, model: CircleModel, data: _Tensors, dist: Dist, on_eval: Any) -> None:
        self.cfg, self.model, self.data, self.dist, self.on_eval = cfg, model, data, dist, on_eval
        self.net = model.net
        self.step_net = dist.wrap(self.net)  # DDP averages gradients over ranks in backward
        device = data.x.device
        self.n, self.n_val = (
            int(v) for v in dist.sum(torch.tensor([data.x.shape[0], data.xv.shape[0]], device=device))
        )
        self.full_batch = cfg.batch_size == 0 or cfg.batch_size >= self.n
        # No autocast weight cache: a captured step must re-cast weights on every replay (same values).
        self.autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16", cache_enabled=False
        )  # fmt: skip
        self.best = _Best(self.net, cfg)
        self.curve: list[CurveRow] = []
        self.step = 0

    def loss_on(self, x: torch.Tensor, y: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """The mean loss; with other ranks, this rank's share of the mean over `rows` rows on all ranks."""
        with self.autocast:
            pred = self.step_net(x)
        if rows is None or not self.dist.ddp:
            return nn.functional.mse_loss(pred.float(), y)
        return nn.functional.mse_loss(pred.float(), y, reduction="sum") / rows

    def val_loss(self) -> torch.Tensor:
        d = self.data
        with torch.no_grad():
            if d.xv.shape[0] <= EVAL_ROWS:
                return self.dist.sum(self.loss_on(d.xv, d.yv, self.n_val))
            total = torch.zeros((), dtype=torch.float64, device=d.xv.device)
            for s in range(0, d.xv.shape[0], EVAL_ROWS):
                with self.autocast:
                    pred = self.net(d.xv[s : s + EVAL_ROWS])
                total += (pred.float() - d.yv[s : s + EVAL_ROWS]).square().sum(dtype=torch.float64)
            return self.dist.sum((total / self.n_val).float())  # this rank's share of the mean over all ranks

    def evaluate(self, epoch: int, phase: str, lr: float, train_loss: torch.Tensor) -> bool:
        """Record one curve row; True when early stopping says stop."""
        val = float(self.val_loss())
        if not math.isfinite(val):
            raise TrainingDiverged(
                f"validation loss became {val} at step {self.step} (lr {lr:.3g}); no model was written"
            )
        row: CurveRow = {"step": self.step, "epoch": epoch, "phase": phase, "lr": lr, "train_loss": float(train_loss)}
        row["val_loss"] = val
        self.curve.append(row)
        if self.on_eval is not None:
            self.on_eval(row)
        return self.best.update(self.net, val, self.step)


def _eager_epoch(run: _Run, opt: torch.optim.Optimizer, sched: Any, batch_gen: torch.Generator,
                 window: list[torch.Tensor], lrs: list[float]) -> torch.Tensor:  # fmt: skip
    """One epoch of optimizer steps, full- or mini-batch (on-device batches, no host sync); its mean loss."""
    cfg, data, dist = run.cfg, run.data, run.dist
    per_epoch = 1 if run.full_batch else dist.steps_per_epoch(run.n, cfg.batch_size)
    local_batch = dist.local_batch(cfg.batch_size)
    order = None if run.full_batch else torch.randperm(len(data.x), generator=batch_gen, device=data.x.device)
    epoch_loss = torch.zeros((), device=data.x.device)
    for b in range(per_epoch):
        if order is None:
            xb, yb, rows = data.x, data.y, run.n
        else:
            idx = order[b * local_batch : (b + 1) * local_batch]
            xb, yb, rows = data.x[idx], data.y[idx], dist.step_rows(run.n, cfg.batch_size, b)
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        loss = run.loss_on(xb, yb, rows)
        dist.backward(loss)
        opt.step()
        if sched is not None:
            sched.step()
        run.step += 1
        window.append(loss.detach())
        epoch_loss += loss.detach() * (rows / run.n)
    return epoch_loss


def _first_order(run: _Run, device: torch.device, seed: int, source: str) -> tuple[bool, str]:
    """Phase 1: the configured optimizer for `epochs`; (stopped early, how the steps ran)."""
    cfg, data, dist = run.cfg, run.data, run.dist
    opt = _optimizer(cfg, run.net.parameters(), capturable=False)
    per_epoch = 1 if run.full_batch else dist.steps_per_epoch(run.n, cfg.batch_size)
    sched = _schedule(cfg, opt, cfg.epochs * per_epoch)
    batch_gen = torch.Generator(device=device).manual_seed(seed + 1 + dist.rank)
    mode = choose_mode(cfg, device, run.full_batch, source, distributed=dist.ddp)
    fast = None
    if mode != "eager":  # full batch: the same step over static buffers, replayed as a CUDA graph
        fast = FastStep(
            run.net, run.loss_on, data.x, data.y, lambda ps, cap: _optimizer(cfg, iter(ps), cap),
            lambda o: _schedule(cfg, o, cfg.epochs), cfg.epochs, cfg.eval_every,
            capture=mode == "graph", required=cfg.cuda_graph == "always",
        )  # fmt: skip
    window: list[torch.Tensor] = []
    lrs: list[float] = []
    stopped = False
    for epoch in range(1, cfg.epochs + 1):
        if fast is not None:
            epoch_loss = fast.step()
            run.step += 1
        else:
            epoch_loss = _eager_epoch(run, opt, sched, batch_gen, window, lrs)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            losses, lrs = fast.drain() if fast is not None else (torch.stack(window), lrs)
            if dist.ddp:  # one all-reduce per evaluation: every rank sees the global losses
                reduced = dist.sum(torch.cat([losses, epoch_loss[None]]))
                losses, epoch_loss = reduced[:-1], reduced[-1]
            _check_finite(losses, run.step - len(losses) + 1, lrs)
            window, lrs = [], []
            if run.evaluate(epoch, "first_order", fast.lr if fast else opt.param_groups[0]["lr"], epoch_loss):
                stopped = True
                break
    if fast is not None:  # what actually ran: capture may have fallen back to the eager static step
        mode = "graph" if fast.captured else "static"
        fast.close()  # parameters own their storage again; a graph's memory pool is released
    return stopped, mode


def _lbfgs(run: _Run) -> bool:
    """Phase 2: full-batch L-BFGS (strong Wolfe line search) in eval_every chunks; True if stopped early."""
    cfg, data, dist = run.cfg, run.data, run.dist
    lbfgs = torch.optim.LBFGS(
        run.net.parameters(), lr=1.0, max_iter=cfg.eval_every, history_size=50,
        line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0,
    )  # fmt: skip

    def closure() -> torch.Tensor:  # the global loss and gradient: every rank's line search agrees
        lbfgs.zero_grad(set_to_none=True)
        loss = run.loss_on(data.x, data.y, run.n)
        dist.backward(loss)
        return dist.sum(loss)

    done = 0
    while done < cfg.lbfgs_steps:
        chunk = min(cfg.eval_every, cfg.lbfgs_steps - done)
        lbfgs.param_groups[0]["max_iter"] = chunk
        lbfgs.param_groups[0]["max_eval"] = chunk * 5 // 4
        lbfgs.step(closure)
        done += chunk
        run.step += chunk
        with torch.no_grad():
            train_loss = dist.sum(run.loss_on(data.x, data.y, run.n))
        _check_finite(train_loss[None], run.step, [1.0])
        if run.evaluate(cfg.epochs, "lbfgs", 1.0, train_loss):
            return True
    return False


def _summary(run: _Run, device: torch.device, mode: str, stopped: bool, weights: Weights) -> dict[str, Any]:
    last = run.curve[-1] if run.curve else {"train_loss": math.nan, "val_loss": math.nan}
    return summary(
        "gradient",
        device.type,
        run.curve,
        best_step=run.best.step,
        best_val_loss=run.best.loss,
        final=(last["train_loss"], last["val_loss"]),
        train_rows=run.n,
        weights=weights,
        dist=run.dist,
        steps=run.step,
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        precision=run.cfg.precision,
        phase1_step=mode,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        stopped_early=stopped,
    )


def train(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    stats: Stats,
    rows: Rows,
    device: torch.device,
    dist: Dist,
    on_eval: Callable[[CurveRow], None] | None = None,
    source: str = PARAMS_FILE,
) -> TrainResult:
    """PyTorch's init from `cfg.seed`, a first-order phase, then L-BFGS; repeatable per device and threads.

    Under torchrun, `dist` is this rank's place and `rows` its shard (circlefit.train.distributed).
    """
    t0 = time.perf_counter()
    g = cfg.gradient
    # initialize: PyTorch's default init, drawn from our generator; data standardized on the device
    model = build_model(model_cfg, stats, torch.Generator().manual_seed(cfg.seed)).to(device)
    run = _Run(g, model, _to_tensors(model, rows, device), dist, on_eval)
    # phase 1, then phase 2 unless early stopping ended the run
    stopped, mode = _first_order(run, device, cfg.seed, source)
    if g.lbfgs_steps > 0 and not stopped:
        stopped = _lbfgs(run)
    # finish: every rank holds the same weights; keep the best validation weights
    dist.check_in_sync(run.net)
    run.net.load_state_dict(run.best.state)
    weights = Weights.of(model.to("cpu").eval())
    wall = time.perf_counter() - t0
    log.info("trained %d steps on %s in %.2f s; best val loss %.3g", run.step, device, wall, run.best.loss)
    timing = {"wall_s": wall, "steps_per_s": run.step / wall if wall else 0.0}
    return TrainResult(weights, run.curve, _summary(run, device, mode, stopped, weights), timing)
