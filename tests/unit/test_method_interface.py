"""The method interface (whyrec.methods.base.Method): every registered method object has it,
`registry.method_of` finds a folder's method, and a method registered only here (a popularity
recommender with template explanations) trains through the real CLI with no library change."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from whyrec.cli import main
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


@dataclass
class ToyConfig:
    template: str = "{item} is popular: {count} people liked it."
    """Explanation template ({item}, {count})."""
    k: int = 3
    """Items kept in the ranking."""


class ToyMethod:
    """Most popular items first; the explanation fills a template with the item's count."""

    name = "toy"
    config_class = ToyConfig
    needs_encoder = None

    def train(self, data, out, *, encoder=None, model, train, config, resume=True, overwrite=False) -> dict:
        lines = Path(data, "interactions.csv").read_text().split()[1:]
        counts = Counter(line.split(",")[1] for line in lines)
        top = [item for item, _ in counts.most_common(config.k)]
        Path(out).mkdir(parents=True, exist_ok=overwrite or resume)
        Path(out, "popularity.json").write_text(json.dumps({i: counts[i] for i in top}))
        Path(out, "config.json").write_text(json.dumps({"method": self.name, "toy": dataclasses.asdict(config)}))
        return {"steps": 0, "items": len(counts), "top": top, "losses": []}

    def check(self, folder) -> None:
        if not Path(folder, "popularity.json").is_file():
            raise WhyrecError(f"{folder}: popularity.json is missing")

    def load(self, folder, device="auto"):
        self.check(folder)
        config = ToyConfig(**json.loads(Path(folder, "config.json").read_text())["toy"])
        counts = json.loads(Path(folder, "popularity.json").read_text())
        return lambda item: config.template.format(item=item, count=counts.get(item, 0))


@pytest.fixture
def toy():
    with METHODS.temporary("toy", ToyMethod(), "popularity with template explanations (tests only)") as method:
        yield method
    assert "toy" not in METHODS


def test_toy_method_trains_through_the_cli(toy, tmp_path, capsys):
    assert isinstance(toy, Method)
    data, out = tmp_path / "data", tmp_path / "toy"
    data.mkdir()
    (data / "interactions.csv").write_text("user,item\nu1,a\nu2,a\nu3,a\nu1,b\nu2,b\nu1,c\nu3,d\n")
    assert main(["train", "explainer", "--method", "toy", "--data", str(data), "--out", str(out)]) == 0
    log = json.loads(capsys.readouterr().out)
    assert log == {"steps": 0, "items": 4, "top": ["a", "b", "c"]}  # "losses" left out, as for every method
    assert method_of(out) is toy
    assert toy.load(out, "cpu")("a") == "a is popular: 3 people liked it."


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
