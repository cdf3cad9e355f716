"""The method interface (whyrec.methods.base.Method): every registered method object has it and
`registry.method_of` finds a folder's method."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from toy_method import ToyMethod

from whyrec.methods.base import Method
from whyrec.registry import METHODS, method_of
from whyrec.utils import WhyrecError

BUILTIN = ("gavamoe", "pepler", "recalpaca", "recexplainer", "xrec")


@pytest.mark.parametrize("name", BUILTIN)
def test_registered_method_has_the_interface(name):
    method = METHODS.get(name)
    assert isinstance(method, Method) and method.name == name
    assert dataclasses.is_dataclass(method.config_class)
    assert isinstance(method.config_class(), method.config_class)  # the defaults build
    assert callable(method.train) and callable(method.check) and callable(method.load)
    assert method.needs_encoder is None or isinstance(method.needs_encoder, str)


def test_method_objects_import_no_torch():
    code = ("import sys\nfrom whyrec.registry import METHODS\n"
            "for n in METHODS.names(): METHODS.get(n)\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("name", "message"), [
    ("xrec", "--method xrec needs --encoder (a folder from `whyrec train encoder`)"),
    ("gavamoe", "--method gavamoe needs --encoder (a VAE folder from `whyrec cluster`)"),
    ("recexplainer", "--method recexplainer needs --encoder (a target model from "
                     "`whyrec train encoder --encoder sasrec|mf`)"),
])
def test_encoder_is_required(name, message, tmp_path):
    method = METHODS.get(name)
    assert method.needs_encoder
    with pytest.raises(WhyrecError) as info:
        method.train(str(tmp_path), str(tmp_path / "out"), encoder=None, model=None, train=None,
                     config=method.config_class())
    assert str(info.value) == message


def test_method_of_reads_the_folder_or_its_explainer(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"method": "pepler"}))
    (tmp_path / "run" / "explainer").mkdir(parents=True)
    (tmp_path / "run" / "explainer" / "config.json").write_text(json.dumps({"method": "gavamoe"}))
    assert method_of(tmp_path / "a") is METHODS.get("pepler")
    assert method_of(str(tmp_path / "run")) is METHODS.get("gavamoe")


@pytest.mark.parametrize("config", [{"method": "nope"}, {"other": 1}])
def test_method_of_names_the_known_methods(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WhyrecError, match="known methods: gavamoe, pepler, recalpaca, recexplainer, xrec"):
        method_of(tmp_path)


def test_method_of_without_config(tmp_path):
    with pytest.raises(WhyrecError, match="no config.json"):
        method_of(tmp_path)


# ---------------------------------------------------------------- a method registered only here
# (tests/unit/toy_method.py; test_toy_method_e2e.py runs it through every command)


def test_toy_method_has_the_interface():
    assert isinstance(ToyMethod(), Method)


def test_registry_temporary_and_unregister():
    with METHODS.temporary("toy", ToyMethod()):
        assert "toy" in METHODS.names()
        with pytest.raises(ValueError, match="already registered"):
            METHODS.register("toy", ToyMethod())
    assert "toy" not in METHODS
    METHODS.register("toy", ToyMethod())
    METHODS.unregister("toy")
    with pytest.raises(KeyError, match="unknown method 'toy'"):
        METHODS.unregister("toy")
