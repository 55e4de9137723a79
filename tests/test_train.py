"""companion.train: the loop, atomic checkpoints, the NaN guard, EMA."""
import copy
import os

import pytest
import torch

from companion import train


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return model, opt, x, y


def _step(model, opt):
    def step(batch):
        xb, yb = batch
        loss = ((model(xb) - yb) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss}
    return step


def _data(x, y):
    from companion.data import batches
    return lambda: batches(x, y, batch_size=16)


def test_fit_records_history_and_learns():
    model, opt, x, y = _setup()
    history = train.fit(_step(model, opt), _data(x, y), steps=200, log_every=10)
    assert history["steps"][0] == 10 and history["steps"][-1] == 200
    assert len(history["loss"]) == 20
    assert history.last("loss") < 0.01 * history["loss"][0]


def test_callback_and_checkpoint_cadence(tmp_path):
    model, opt, x, y = _setup()
    calls = []
    train.fit(_step(model, opt), _data(x, y), steps=30, callback=lambda i, h: calls.append(i),
              callback_every=10, checkpoint=tmp_path / "ck.pt", checkpoint_every=10,
              state={"model": model, "opt": opt})
    assert calls == [10, 20, 30]
    restored = torch.nn.Linear(3, 1)
    train.load_checkpoint(tmp_path / "ck.pt", model=restored)
    assert torch.equal(restored.weight, model.weight)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, opt, x, y = _setup()
    good_step = _step(model, opt)
    calls = {"n": 0}
    snapshot = {}

    def step(batch):
        calls["n"] += 1
        if calls["n"] > 25:
            return {"loss": torch.tensor(float("nan"))}
        losses = good_step(batch)
        if calls["n"] == 20:
            snapshot["weight"] = model.weight.detach().clone()
        return losses

    path = tmp_path / "ck.pt"
    with pytest.raises(train.NonFiniteLossError,
                       match=r"step 26: loss loss=nan is not finite.*ck.pt \(step 20\)"):
        train.fit(step, _data(x, y), steps=100, checkpoint=path, checkpoint_every=10,
                  state={"model": model})
    restored = torch.nn.Linear(3, 1)
    train.load_checkpoint(path, model=restored)
    assert torch.equal(restored.weight, snapshot["weight"])


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ck.pt"
    train.save_checkpoint(path, model=model)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, model=torch.nn.Linear(2, 2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_train_or_load(tmp_path, capsys):
    model = torch.nn.Linear(2, 2)
    calls = []
    train.train_or_load(tmp_path / "m.pt", lambda: calls.append(1), model=model)
    other = torch.nn.Linear(2, 2)
    assert train.train_or_load(tmp_path / "m.pt", lambda: calls.append(1), model=other) is None
    assert calls == [1] and torch.equal(other.weight, model.weight)
    assert "loaded checkpoint" in capsys.readouterr().out


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train.load_checkpoint(tmp_path / "missing.pt")
    train.save_checkpoint(tmp_path / "a.pt", model=torch.nn.Linear(1, 1))
    with pytest.raises(KeyError, match="has no 'opt'"):
        train.load_checkpoint(tmp_path / "a.pt", opt=torch.optim.SGD([torch.zeros(1)], lr=1))


def test_ema_follows_the_formula():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = train.EMA(model, decay=0.9)
    start = copy.deepcopy(model[0].weight.detach())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(8, 2))                      # changes the batch-norm running stats
    ema.update(model)
    assert torch.allclose(ema.model[0].weight, 0.9 * start + 0.1 * model[0].weight)
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match="decay"):
        train.EMA(model, decay=1.0)


def test_ema_warmup_follows_the_formula():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = train.EMA(model, decay=0.99, warmup=True)
    expected = model.weight.detach().clone()
    for n in range(1, 400):
        with torch.no_grad():
            model.weight.fill_(float(n))
        ema.update(model)
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * n
        assert torch.allclose(ema.model.weight, expected)
    state = ema.state_dict()
    other = train.EMA(model, decay=0.5)
    other.load_state_dict(state)
    assert other.warmup and other.updates == 399 and other.decay == 0.99


def test_fit_validates_arguments():
    with pytest.raises(ValueError, match="steps"):
        train.fit(lambda b: 0.0, lambda: [1], steps=0)
    with pytest.raises(TypeError, match="data"):
        train.fit(lambda b: 0.0, [1, 2], steps=1)
    with pytest.raises(ValueError, match="state"):
        train.fit(lambda b: 0.0, lambda: [1], steps=1, checkpoint="x.pt")
    with pytest.raises(ValueError, match="no batches"):
        train.fit(lambda b: 0.0, lambda: [], steps=1)


def test_adam_with_schedule():
    w = torch.nn.Parameter(torch.ones(2))
    opt, sched = train.adam_with_schedule([w], 0.1, 10, "cosine")
    rates = []
    for _ in range(10):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates[-1] == pytest.approx(0.0, abs=1e-12) and rates[0] < 0.1
    opt, sched = train.adam_with_schedule([w], 0.1, 10)
    assert sched is None and opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="schedule"):
        train.adam_with_schedule([w], 0.1, 10, "linear")
