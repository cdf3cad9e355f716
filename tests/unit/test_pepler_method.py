"""PEPLER's three variants on the tiny random Llama and a synthetic review dataset (METHODS §2.1)."""

import json
import math
import random

import pandas as pd
import pytest
import torch

from whyrec.config import ModelConfig, PEPLERConfig, TrainConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.llm.load import load_model
from whyrec.methods.pepler.artifact import load_pepler_run, save_pepler
from whyrec.methods.pepler.evaluate import evaluate_pepler, generate_pepler, rating_errors
from whyrec.methods.pepler.model import PEPLER, discrete_prompt
from whyrec.methods.pepler.train import fit, make_examples, train_features, train_pepler

torch.set_num_threads(1)
TINY = ModelConfig("tiny-random-llama", dtype="float32", device="cpu")  # PEPLER tunes its LM: fp32, as its loader
FEATURES = ["sound", "price", "tone", "case", "strings"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """20 users x 6 items each over 15 items; 'the <feature> is <adj>' explanations."""
    rng = random.Random(0)
    rows = []
    for u in range(20):
        for i in rng.sample(range(15), 6):
            feat = FEATURES[(u + i) % len(FEATURES)]
            split = rng.choices(S.SPLITS, weights=[8, 1, 1])[0]
            rows.append({S.USER: f"u{u}", S.ITEM: f"i{i}", S.RATING: float(1 + (u * i) % 5),
                         S.EXPLANATION: f"the {feat} is {rng.choice(['great', 'fine'])}", S.FEATURE: feat, S.SPLIT: split})
    frame = pd.DataFrame(rows)
    assert {S.VALID, S.TEST} <= set(frame[S.SPLIT])
    path = tmp_path_factory.mktemp("pepler") / "data"
    RecDataset(frame, None, None, meta={"name": "synthetic"}).save(path)
    return str(path)


def build(data_dir, **kw):
    torch.manual_seed(0)
    ds = RecDataset.load(data_dir)
    llm, tok = load_model(TINY)
    module = PEPLER(llm, tok, ds.n_users, ds.n_items, PEPLERConfig(batch_size=32, **kw))
    feats = train_features(ds)
    split = lambda name: make_examples(module, ds.explanation_records(name), ds.user2idx, ds.item2idx, feats)  # noqa: E731
    return module, split(S.TRAIN), split(S.VALID), ds, feats


def steps(module, data, n, lr):
    idx = list(range(min(32, len(data))))
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    first = None
    for _ in range(n):
        loss = module.objective(*module.losses(*data.rows(idx)))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, module.objective(*module.losses(*data.rows(idx))).item()


def test_discrete_prompt_keeps_the_precedence_quirk():
    u, i = {"sound", "tone", "price"}, {"tone", "case"}
    assert discrete_prompt(u, i) == ["tone", "case", "price", "sound", "tone"]  # inter + union
    assert discrete_prompt(u, i, dedup=True) == ["tone", "case", "price", "sound"]  # inter + sym. difference
    assert discrete_prompt(set(), set()) == []


def test_continuous_phase1_trains_only_the_prompts(data_dir):
    module, train, _, _, _ = build(data_dir)
    module.set_phase(False)
    lm_before = {k: v.clone() for k, v in module.llm.state_dict().items()}
    prompt_before = module.user_emb.weight.detach().clone()
    first, last = steps(module, train, 10, 1e-2)
    assert last < first
    assert all(torch.equal(lm_before[k], v) for k, v in module.llm.state_dict().items())
    assert not torch.equal(prompt_before, module.user_emb.weight)
    assert module.user_emb.weight.abs().max() <= 0.2  # U(-0.1, 0.1) init, few small steps


@pytest.mark.parametrize("kw", [{"variant": "discrete"}, {"variant": "reg"},
                                {"variant": "reg", "rating_head": "mlp", "rating_reg": 1.0}])
def test_full_finetune_variants_reduce_the_loss(data_dir, kw):
    module, train, _, _, _ = build(data_dir, **kw)
    module.set_phase(True)
    if kw["variant"] == "discrete":
        assert any(train.prompts) and max(map(len, train.prompts)) <= 20
    first, last = steps(module, train, 8, 1e-3)
    assert last < first
    if kw["variant"] == "reg":
        _, mse = module.losses(*train.rows(list(range(8))))
        assert mse is not None and math.isfinite(mse.item())


def test_labels_mask_prompt_and_padding(data_dir):
    module, train, _, _, _ = build(data_dir, variant="discrete")
    enc_len = [len(p) for p in train.prompts[:4]]
    from whyrec.llm.collate import pad_batch

    enc = pad_batch(train.prompts[:4], [[module.bos, *t, module.eos] for t in train.texts[:4]], module.pad)
    for b, n in enumerate(enc_len):
        assert (enc["labels"][b, :n] == -100).all() and enc["labels"][b, n] == module.bos


def test_rating_errors_clip_to_the_range():
    got = rating_errors(torch.tensor([7.0, -3.0, 3.0]), torch.tensor([5.0, 1.0, 2.0]), 1.0, 5.0)
    assert got == pytest.approx({"rmse": math.sqrt(1 / 3), "mae": 1 / 3})


def test_generation_is_greedy_and_at_most_words_tokens(data_dir):
    module, train, _, _, _ = build(data_dir, variant="continuous", words=5)
    idx = list(range(6))
    users, items, prompts, _, _ = train.rows(idx)
    ids = module.generate_ids(users, items, prompts)
    assert len(ids) == 6 and all(len(r) <= 5 and module.eos not in r for r in ids)
    assert ids == module.generate_ids(users, items, prompts)


@pytest.mark.parametrize("variant", ["continuous", "discrete", "reg"])
def test_save_load_gives_identical_generations(data_dir, tmp_path, variant):
    module, train, valid, ds, feats = build(data_dir, variant=variant, epochs=1, epochs_phase2=1)
    fit(module, train, valid, module.cfg, seed=0, ckpt=tmp_path / "ckpt")
    cfg = {"method": "pepler", "model": vars(TINY), "pepler": vars(module.cfg), "n_users": ds.n_users,
           "n_items": ds.n_items, "rating_range": [1.0, 5.0]}
    save_pepler(module, tmp_path / "run", cfg, ds.user2idx, ds.item2idx, feats)
    loaded, _ = load_pepler_run(tmp_path / "run", device="cpu")
    users, items, prompts, _, _ = valid.rows(list(range(len(valid))))
    assert module.generate_ids(users, items, prompts) == loaded.generate_ids(users, items, prompts)
    if variant == "reg":
        assert torch.equal(module.predict_rating(users, items), loaded.predict_rating(users, items))


def test_train_pepler_writes_the_artifact_and_metrics(data_dir, tmp_path, capsys):
    out = tmp_path / "reg"
    cfg = PEPLERConfig(variant="reg", epochs=2, batch_size=32, words=8)
    log = train_pepler(data_dir, str(out), TINY, cfg, TrainConfig(seed=1))
    assert log["complete"] and len(log["history"]) == 2
    assert f"pepler: {log['train_examples']} train / {log['valid_examples']} valid explanations, batch 32; " \
        in capsys.readouterr().err  # what it trains with, said at the start
    assert {"config.json", "prompt.safetensors", "user2idx.json", "item2idx.json", "features.json",
            "training_log.json", "run_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert (out / "lm" / "config.json").exists() and not (out / "checkpoint").exists()
    assert train_pepler(data_dir, str(out), TINY, cfg, TrainConfig(seed=1)) == log  # already complete
    preds, refs, feats = generate_pepler(out, data_dir, max_pairs=5, device="cpu")
    assert len(preds) == len(refs) == len(feats) == 5 and all(f in FEATURES for f in feats)
    metrics = evaluate_pepler(out, data_dir, device="cpu")
    assert math.isfinite(metrics["rating"]["rmse"]) and {"fmr", "fcr", "div"} <= set(metrics["features"])
    assert json.loads((out / "metrics.json").read_text())["method"] == "pepler-reg"
    # The benchmark's per-pair rating errors equal evaluate's on the same (test) rows.
    from whyrec.data.dataset import RecDataset
    from whyrec.methods.pepler.evaluate import pepler_rating_metrics

    test_rows = RecDataset.load(data_dir).explanation_records("test")
    assert pepler_rating_metrics(out, test_rows, device="cpu") == pytest.approx(metrics["rating"])
    # the benchmark's rating column: reg folders only
    from whyrec.methods.pepler.method import METHOD

    assert METHOD.benchmark_extra_metrics(out, test_rows, "cpu")["rating"] == pytest.approx(metrics["rating"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"method": "pepler",
                                                                "pepler": {"variant": "continuous"}}))
    assert METHOD.benchmark_extra_metrics(tmp_path / "other", test_rows, "cpu") is None


def test_continuous_training_resumes_after_a_time_limit(data_dir, tmp_path):
    cfg = PEPLERConfig(variant="continuous", epochs=2, epochs_phase2=1, batch_size=32, words=6)
    full = train_pepler(data_dir, str(tmp_path / "a"), TINY, cfg, TrainConfig(seed=1))
    cut = train_pepler(data_dir, str(tmp_path / "b"), TINY, cfg, TrainConfig(seed=1, max_minutes=0))
    assert not cut["complete"] and len(cut["history"]) == 1
    assert json.loads((tmp_path / "b" / "config.json").read_text())["stopped"] == "max_minutes"  # usable now
    again = train_pepler(data_dir, str(tmp_path / "b"), TINY, cfg, TrainConfig(seed=1, max_minutes=0))
    assert again == cut  # the same budget again: the saved run, no more training
    resumed = train_pepler(data_dir, str(tmp_path / "b"), TINY, cfg, TrainConfig(seed=1, max_minutes=None))
    assert [h["valid_loss"] for h in resumed["history"]] == [h["valid_loss"] for h in full["history"]]
    assert "stopped" not in json.loads((tmp_path / "b" / "config.json").read_text())
    assert not (tmp_path / "b" / "checkpoint").exists()


def tiny_gpt2():
    """A GPT-2-style backbone (absolute positions, tied embeddings) with the tiny tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from whyrec.llm.load import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    conf = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(conf).eval(), tok


@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
def test_left_padded_batch_generates_as_single_rows(data_dir, backbone):
    """Discrete prompts differ in length; padding must not change any row's greedy output."""
    module, train, _, _, _ = build(data_dir, variant="discrete", words=20)
    if backbone == "gpt2":
        llm, tok = tiny_gpt2()
        module = PEPLER(llm, tok, 20, 15, module.cfg)
        first, last = steps(module, train, 3, 1e-3)
        assert last < first
    users, items, _, _, _ = train.rows([0, 1, 2, 3])
    prompts = [module.feature_ids(w) for w in (["tone"], [], ["sound", "price"], ["case", "strings", "tone"])]
    batched = module.generate_ids(users, items, prompts)
    single = [module.generate_ids(users[k:k + 1], items[k:k + 1], prompts[k:k + 1])[0] for k in range(4)]
    assert batched == single and sum(map(len, batched)) > 4 * 3  # real outputs, not instant eos


def test_old_import_path_re_exports_lazily():
    """`whyrec.methods.pepler` (old import path) resolves each name to its submodule
    without importing torch itself."""
    import subprocess
    import sys

    import whyrec.methods.pepler as P
    from whyrec.registry import METHODS

    assert P.train_pepler is train_pepler and P.evaluate_pepler is evaluate_pepler and P.PEPLER is PEPLER
    assert P.PEPLERConfig is PEPLERConfig and METHODS.get("pepler").config_class is PEPLERConfig
    assert all(getattr(P, name) is not None for name in P.__all__)
    with pytest.raises(AttributeError):
        P.no_such_name  # noqa: B018
    code = "import sys, whyrec.methods.pepler; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_start_line_says_what_pepler_trains_with():
    from whyrec.config import PEPLERConfig
    from whyrec.methods.pepler.train import settings_line

    line = settings_line(PEPLERConfig(batch_size=16, epochs=3, epochs_phase2=2, lr_phase2=3e-4), 90, 10)
    assert line.startswith("pepler: 90 train / 10 valid explanations, batch 16; ")
    assert "phase 1 (prompt): up to 3 epochs at lr 0.001; phase 2 (prompt + LM): up to 2 epochs at lr 0.0003" in line
    assert "--train.batch_size and --train.lr, when given, replace batch and lr" in line
    assert "phase 2" not in settings_line(PEPLERConfig(epochs_phase2=0), 90, 10)
    assert "phase 1 (prompt): up to 1 epoch at" in settings_line(PEPLERConfig(epochs=1), 90, 10)
