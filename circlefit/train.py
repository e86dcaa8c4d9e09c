"""Training: standardized inputs and labels, a first-order phase, then full-batch L-BFGS."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from circlefit.config import ModelConfig, TrainConfig
from circlefit.distributed import SINGLE, Dist
from circlefit.errors import TrainingDiverged
from circlefit.fast_step import FastStep, StepMode, choose_mode
from circlefit.model import CircleModel, build_model
from circlefit.normalize import Stats

__all__ = ["TrainResult", "TrainingDiverged", "train"]

log = logging.getLogger(__name__)
CurveRow = dict[str, Any]
# Validation rows per forward pass: one pass over a large validation split holds its whole
# [rows, width] hidden tensor (twice, with its activation; rows × width × 4 bytes), chunks hold
# only this many rows' worth. Measured memory at scale: BENCHMARKS.md ("Growth"). At or below
# this many rows (the default data) the loss is one forward, so its value and dvc.lock do not change.
EVAL_ROWS = 65536


@dataclass
class TrainResult:
    model: CircleModel  # on CPU, best-validation weights restored
    curve: list[CurveRow]  # one row per evaluation: step, epoch, phase, lr, train/val loss
    summary: dict[str, Any]  # deterministic facts about the run (no wall time)
    wall_s: float = 0.0
    timing: dict[str, float] = field(default_factory=dict)


@dataclass
class _Tensors:
    x: torch.Tensor
    y: torch.Tensor
    xv: torch.Tensor
    yv: torch.Tensor


class _Best:
    """Best validation loss so far, its weights, and patience bookkeeping."""

    def __init__(self, net: nn.Module, cfg: TrainConfig) -> None:
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


def _optimizer(cfg: TrainConfig, params: Iterator[nn.Parameter], capturable: bool) -> torch.optim.Optimizer:
    kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=0.9, **kw)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}[cfg.optimizer]
    return cls(params, capturable=capturable, **kw)


def _schedule(cfg: TrainConfig, opt: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.schedule == "constant" or total == 0:
        return None
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)


def _to_tensors(model: CircleModel, train_rows: np.ndarray, val_rows: np.ndarray, device: torch.device) -> _Tensors:
    """Standardize with the model's own buffers (what inference will see), once, on device."""
    with torch.no_grad():
        tr = torch.from_numpy(np.ascontiguousarray(train_rows)).to(device)
        va = torch.from_numpy(np.ascontiguousarray(val_rows)).to(device)
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
        "lower train.lr or check the data; no model was written"
    )


def train(
    tcfg: TrainConfig,
    mcfg: ModelConfig,
    stats: Stats,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    device: torch.device,
    on_eval: Callable[[CurveRow], None] | None = None,
    step_mode: StepMode | None = None,
    dist: Dist = SINGLE,
) -> TrainResult:
    """Train a fresh model from `tcfg.seed`; deterministic for fixed params, device and threads.

    `step_mode` overrides how phase-1 steps run (default: from `tcfg.cuda_graph`, see
    `circlefit.fast_step.choose_mode`); "static" runs the graph's step eagerly, on any device.
    Under torchrun, `dist` is this rank's place and the rows are its shard (circlefit.distributed).
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(tcfg.seed)
    model = build_model(mcfg, stats, gen).to(device)
    data = _to_tensors(model, train_rows, val_rows, device)
    net = model.net
    step_net = dist.wrap(net)  # DDP averages gradients over ranks in backward
    n, n_val = (int(v) for v in dist.sum(torch.tensor([data.x.shape[0], data.xv.shape[0]], device=device)))
    full_batch = tcfg.batch_size == 0 or tcfg.batch_size >= n
    per_epoch = 1 if full_batch else dist.steps_per_epoch(n, tcfg.batch_size)
    local_batch = dist.local_batch(tcfg.batch_size)
    batch_gen = torch.Generator(device=device).manual_seed(tcfg.seed + 1 + dist.rank)
    # No autocast weight cache: a captured step must re-cast weights on every replay (same values).
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=tcfg.precision == "bf16", cache_enabled=False
    )  # fmt: skip

    def loss_on(x: torch.Tensor, y: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """The mean loss; with other ranks, this rank's share of the mean over `rows` rows on all ranks."""
        with autocast:
            pred = step_net(x)
        if rows is None or not dist.ddp:
            return nn.functional.mse_loss(pred.float(), y)
        return nn.functional.mse_loss(pred.float(), y, reduction="sum") / rows

    def val_loss() -> torch.Tensor:
        with torch.no_grad():
            if data.xv.shape[0] <= EVAL_ROWS:
                return dist.sum(loss_on(data.xv, data.yv, n_val))
            total = torch.zeros((), dtype=torch.float64, device=device)
            for s in range(0, data.xv.shape[0], EVAL_ROWS):
                with autocast:
                    pred = net(data.xv[s : s + EVAL_ROWS])
                total += (pred.float() - data.yv[s : s + EVAL_ROWS]).square().sum(dtype=torch.float64)
            return dist.sum((total / n_val).float())  # this rank's share of the mean over all ranks

    best = _Best(net, tcfg)
    curve: list[CurveRow] = []
    step = 0
    stopped_early = False

    def evaluate(epoch: int, phase: str, lr: float, train_loss: torch.Tensor) -> bool:
        val = float(val_loss())
        if not math.isfinite(val):
            raise TrainingDiverged(f"validation loss became {val} at step {step} (lr {lr:.3g}); no model was written")
        row: CurveRow = {"step": step, "epoch": epoch, "phase": phase, "lr": lr, "train_loss": float(train_loss)}
        row["val_loss"] = val
        curve.append(row)
        if on_eval is not None:
            on_eval(row)
        return best.update(net, val, step)

    # Phase 1: first-order optimizer, full- or mini-batch, on-device batches, no per-step sync.
    opt = _optimizer(tcfg, net.parameters(), capturable=False)
    sched = _schedule(tcfg, opt, tcfg.epochs * per_epoch)
    mode = choose_mode(tcfg, device, full_batch, override=step_mode, distributed=dist.ddp)
    fast = None
    if mode != "eager":  # full batch: the same step over static buffers, replayed as a CUDA graph
        fast = FastStep(
            net, loss_on, data.x, data.y, lambda ps, cap: _optimizer(tcfg, iter(ps), cap),
            lambda o: _schedule(tcfg, o, tcfg.epochs), tcfg.epochs, tcfg.eval_every,
            capture=mode == "graph", required=tcfg.cuda_graph == "always",
        )  # fmt: skip
    window: list[torch.Tensor] = []
    lrs: list[float] = []
    for epoch in range(1, tcfg.epochs + 1):
        if fast is not None:
            epoch_loss = fast.step()
            step += 1
        else:
            order = None if full_batch else torch.randperm(len(data.x), generator=batch_gen, device=device)
            epoch_loss = torch.zeros((), device=device)
            for b in range(per_epoch):
                if order is None:
                    xb, yb, rows = data.x, data.y, n
                else:
                    idx = order[b * local_batch : (b + 1) * local_batch]
                    xb, yb, rows = data.x[idx], data.y[idx], dist.step_rows(n, tcfg.batch_size, b)
                lrs.append(opt.param_groups[0]["lr"])
                opt.zero_grad(set_to_none=True)
                loss = loss_on(xb, yb, rows)
                dist.backward(loss)
                opt.step()
                if sched is not None:
                    sched.step()
                step += 1
                window.append(loss.detach())
                epoch_loss += loss.detach() * (rows / n)
        if epoch % tcfg.eval_every == 0 or epoch == tcfg.epochs:
            losses, lrs = fast.drain() if fast is not None else (torch.stack(window), lrs)
            if dist.ddp:  # one all-reduce per evaluation: every rank sees the global losses
                reduced = dist.sum(torch.cat([losses, epoch_loss[None]]))
                losses, epoch_loss = reduced[:-1], reduced[-1]
            _check_finite(losses, step - len(losses) + 1, lrs)
            window, lrs = [], []
            if evaluate(epoch, "first_order", fast.lr if fast else opt.param_groups[0]["lr"], epoch_loss):
                stopped_early = True
                break
    if fast is not None:  # what actually ran: capture may have fallen back to the eager static step
        mode = "graph" if fast.captured else "static"
        fast.close()  # parameters own their storage again; a graph's memory pool is released

    # Phase 2: full-batch L-BFGS refinement (strong Wolfe line search), in eval_every chunks.
    if tcfg.lbfgs_steps > 0 and not stopped_early:
        lbfgs = torch.optim.LBFGS(
            net.parameters(), lr=1.0, max_iter=tcfg.eval_every, history_size=50,
            line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0,
        )  # fmt: skip

        def closure() -> torch.Tensor:  # the global loss and gradient: every rank's line search agrees
            lbfgs.zero_grad(set_to_none=True)
            loss = loss_on(data.x, data.y, n)
            dist.backward(loss)
            return dist.sum(loss)

        done = 0
        while done < tcfg.lbfgs_steps:
            chunk = min(tcfg.eval_every, tcfg.lbfgs_steps - done)
            lbfgs.param_groups[0]["max_iter"] = chunk
            lbfgs.param_groups[0]["max_eval"] = chunk * 5 // 4
            lbfgs.step(closure)
            done += chunk
            step += chunk
            with torch.no_grad():
                train_loss = dist.sum(loss_on(data.x, data.y, n))
            _check_finite(train_loss[None], step, [1.0])
            if evaluate(tcfg.epochs, "lbfgs", 1.0, train_loss):
                stopped_early = True
                break

    dist.check_in_sync(net)
    net.load_state_dict(best.state)
    model = model.to("cpu").eval()
    wall = time.perf_counter() - t0
    last = curve[-1] if curve else {"train_loss": math.nan, "val_loss": math.nan}
    summary = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": tcfg.precision,
        "phase1_step": mode,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": step,
        "best_step": best.step,
        "best_val_loss": best.loss,
        "final_train_loss": last["train_loss"],
        "final_val_loss": last["val_loss"],
        "stopped_early": stopped_early,
        "train_rows": n,
        "parameters": sum(p.numel() for p in net.parameters()),
        **dist.describe(),
    }
    log.info("trained %d steps on %s in %.2f s; best val loss %.3g", step, device, wall, best.loss)
    return TrainResult(model, curve, summary, wall, {"wall_s": wall, "steps_per_s": step / wall if wall else 0.0})
