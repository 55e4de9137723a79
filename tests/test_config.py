import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion import config


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "standard")
    assert config.profile() == "standard"
    monkeypatch.setenv("COURSE_PROFILE", "FULL")
    assert config.profile() == "full"


def test_profile_default_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.profile() == "standard"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.profile() == "full"


def test_unknown_profile_is_named(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match="COURSE_PROFILE is 'turbo'.*smoke, standard, full"):
        config.profile()


def test_sizes_picks_the_profile_column():
    table = {"epochs": (1, 5, 20), "batch": (32, 64, 128)}
    assert vars(config.sizes(table, "smoke")) == {"epochs": 1, "batch": 32}
    assert vars(config.sizes(table, "standard")) == {"epochs": 5, "batch": 64}
    assert vars(config.sizes(table, "full")) == {"epochs": 20, "batch": 128}


@given(st.one_of(st.integers(), st.text(), st.tuples(st.integers()),
                 st.tuples(st.integers(), st.integers())))
def test_sizes_rejects_rows_that_are_not_triples(row):
    with pytest.raises(ValueError, match=r"table\['x'\]: expected a \(smoke, standard, full\)"):
        config.sizes({"x": row}, "smoke")


def test_sizes_rejects_non_dict_and_bad_names():
    with pytest.raises(TypeError, match="table"):
        config.sizes([("x", (1, 2, 3))], "smoke")
    with pytest.raises(ValueError, match="identifiers"):
        config.sizes({"not a name": (1, 2, 3)}, "smoke")


def test_seed_everything_is_reproducible():
    g = config.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    g = config.seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    assert a == b


@given(st.one_of(st.floats(), st.text(), st.booleans(), st.integers(max_value=-1),
                 st.integers(min_value=2**32)))
def test_seed_rejects_bad_values(seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        config.seed_everything(seed)


def test_device_choice(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "_mps_available", lambda: False)
    assert config.device().type == "cpu"
    assert config.device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="cuda"):
        config.device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        config.device("tpu9")


def test_set_threads_validates():
    before = torch.get_num_threads()
    assert config.set_threads(1) == 1 and torch.get_num_threads() == 1
    config.set_threads(before)
    with pytest.raises(ValueError, match="n: expected a positive int"):
        config.set_threads(0)


def test_setup_reports_one_line(capsys):
    env = config.setup(seed=3)
    assert env.profile == "smoke"
    assert capsys.readouterr().out.startswith("profile: smoke | device:")
