"""A small training-loop helper: progress bar, loss history, callbacks, checkpoints, EMA, NaN guard.

The loop is deliberately thin: the lesson writes the step (forward, loss, backward, optimiser
step) as a function that returns its losses, and :func:`fit` runs it::

    def step(batch):
        x, _ = batch
        loss = F.mse_loss(model(x), x)
        opt.zero_grad(); loss.backward(); opt.step()
        return {"loss": loss}

    history = train.fit(step, lambda: data.batches(x, y, batch_size=128), steps=500,
                        checkpoint="runs/ae.pt", state={"model": model, "opt": opt})

Checkpoints are written atomically (a temporary file, then a rename), so a crash never leaves a
half-written file; a loss that turns NaN or infinite stops training with a clear message and the
last good checkpoint stays on disk.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Mapping

import torch
from tqdm.auto import tqdm


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message says when and where the last good
    checkpoint is."""


class History(dict):
    """Loss history: a dict ``name -> list of floats`` with ``steps`` (the step of each entry)."""

    def append(self, step: int, losses: Mapping[str, float]) -> None:
        self.setdefault("steps", []).append(step)
        for key, value in losses.items():
            self.setdefault(key, []).append(value)

    def last(self, key: str) -> float:
        if key not in self or not self[key]:
            raise KeyError(f"key: no history for {key!r}; recorded: {sorted(self)}")
        return self[key][-1]


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _state_of(obj):
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def save_checkpoint(path, **objects) -> pathlib.Path:
    """Save ``name=object`` pairs (modules and optimisers by their ``state_dict``) atomically.

    The file is written to a temporary name in the same folder and renamed when complete.
    """
    if not objects:
        raise ValueError("objects: expected at least one name=object to save")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {name: _state_of(obj) for name, obj in objects.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, map_location="cpu", **objects) -> dict:
    """Load a checkpoint; restore each ``name=object`` given (``load_state_dict``); return the dict.

    Raises ``FileNotFoundError`` naming the path, and ``KeyError`` for a name not in the file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    for name, obj in objects.items():
        if name not in payload:
            raise KeyError(f"checkpoint {path} has no {name!r}; it holds {sorted(payload)}")
        if hasattr(obj, "load_state_dict"):
            obj.load_state_dict(payload[name])
    return payload


def train_or_load(path, train_fn: Callable[[], object], **objects):
    """Load ``objects`` from ``path`` if it exists; else run ``train_fn()`` and save them.

    Returns ``train_fn``'s result when it trained, else ``None`` (and prints which happened).
    """
    path = pathlib.Path(path)
    if path.is_file():
        load_checkpoint(path, **objects)
        print(f"loaded checkpoint {path}")
        return None
    result = train_fn()
    save_checkpoint(path, **objects)
    print(f"trained and saved checkpoint {path}")
    return result


# ---------------------------------------------------------------------------------------------
# EMA of weights
# ---------------------------------------------------------------------------------------------

class EMA:
    """Exponential moving average of a model's weights (used for GAN generators, Karras 2018).

    theta_ema <- d * theta_ema + (1 - d) * theta after each step; buffers (batch-norm
    statistics) are copied. ``ema.model`` is the averaged copy, in eval mode, without gradients.
    With ``warmup=True`` the rate is ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates,
    so a short run is not dominated by the initial weights (the usual warm-up of EMA, as in
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``); otherwise ``d = decay``.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = False):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected 0 <= decay < 1, got {decay}")
        self.decay, self.warmup, self.updates = decay, bool(warmup), 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup \
            else self.decay
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.warmup, self.updates = state.get("warmup", False), state.get("updates", 0)
        self.model.load_state_dict(state["model"])


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def _as_floats(losses) -> dict[str, float]:
    if isinstance(losses, torch.Tensor) or isinstance(losses, (int, float)):
        losses = {"loss": losses}
    if not isinstance(losses, Mapping):
        raise TypeError(f"step: expected it to return a loss or a dict of losses, "
                        f"got {type(losses).__name__}")
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in losses.items()}


def _forever(make_batches: Callable[[], Iterable]):
    while True:
        empty = True
        for batch in make_batches():
            empty = False
            yield batch
        if empty:
            raise ValueError("data: the batch iterable produced no batches")


def adam(params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Adam:
    """Adam (Kingma and Ba 2015), the fused single-kernel version where this torch has it: on a
    CPU it updates the course's small networks about twice as fast as the default."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without fused Adam
        return torch.optim.Adam(params, lr=lr, betas=betas)


def adam_with_schedule(params, lr: float, steps: int, schedule: str = "constant",
                       betas=(0.9, 0.999)):
    """:func:`adam` and its learning-rate schedule, ``(optimiser, scheduler or None)``:
    ``"constant"``, or ``"cosine"``, which decays the rate to 0 over ``steps`` (Loshchilov and
    Hutter 2017) and gains a few nats in a short run. Call ``scheduler.step()`` after each step."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule: expected 'constant' or 'cosine', got {schedule!r}")
    opt = adam(params, lr, betas)
    return opt, (torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
                 if schedule == "cosine" else None)


def fit(step: Callable, data: Callable[[], Iterable], *, steps: int, log_every: int = 10,
        callback: Callable[[int, History], None] | None = None, callback_every: int = 0,
        checkpoint=None, checkpoint_every: int = 0, state: Mapping | None = None,
        desc: str = "train", progress: bool = True) -> History:
    """Run ``step(batch)`` for ``steps`` steps over ``data()`` (restarted at each epoch).

    - ``step`` returns a loss tensor or a dict of named losses; every ``log_every`` steps they are
      recorded in the returned :class:`History` (and shown on a ``tqdm.auto`` bar, silent under
      ``TQDM_DISABLE=1``).
    - ``callback(step, history)`` runs every ``callback_every`` steps (an image grid, say).
    - With ``checkpoint`` and ``state`` (``name -> module/optimiser``), a checkpoint is saved every
      ``checkpoint_every`` steps and at the end, atomically.
    - A NaN or infinite loss raises :class:`NonFiniteLossError`; the last good checkpoint is kept.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if not callable(data):
        raise TypeError("data: expected a function returning an iterable of batches "
                        "(e.g. lambda: data.batches(x, batch_size=64))")
    if checkpoint is not None and not state:
        raise ValueError("state: a checkpoint path needs state={'name': module, ...} to save")
    history = History()
    last_good = None
    # Pass `disable` only to switch the bar off: tqdm reads TQDM_DISABLE for arguments not given.
    bar = tqdm(total=steps, desc=desc, leave=False, **({} if progress else {"disable": True}))
    batches = _forever(data)
    try:
        for i in range(1, steps + 1):
            losses = _as_floats(step(next(batches)))
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                where = (f"the last good checkpoint is {checkpoint} (step {last_good})"
                         if last_good else "no checkpoint was saved before it")
                raise NonFiniteLossError(
                    f"step {i}: loss {', '.join(f'{k}={v}' for k, v in bad.items())} is not "
                    f"finite; training stopped and {where}. Try a smaller learning rate, "
                    f"gradient clipping, or check the inputs for NaN."
                )
            if i % log_every == 0 or i == steps:
                history.append(i, losses)
                bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            if callback is not None and callback_every and i % callback_every == 0:
                callback(i, history)
            if checkpoint is not None and (i == steps or (checkpoint_every
                                                          and i % checkpoint_every == 0)):
                save_checkpoint(checkpoint, **state)
                last_good = i
            bar.update(1)
    finally:
        bar.close()
    return history
