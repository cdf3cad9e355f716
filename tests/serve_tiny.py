"""The tiny served run shared by the serve tests: 60 MovieLens users, tiny LightGCN, tiny XRec.

Built once per test session under pytest's base temp folder (both test files ask for the same
path, so the second one reuses it).
"""

from pathlib import Path

from conftest import REPO, require_distribution


def tiny_run(tmp_path_factory) -> Path:
    from whyrec.cli import main

    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    root = tmp_path_factory.getbasetemp() / "serve-tiny-run"
    if (root / "explainer" / "config.json").exists():
        return root
    data, enc, expl = root / "data", root / "encoder", root / "explainer"
    assert main(["data", "prepare", "--source", "ml-100k", "--out", str(data), "--max_users", "60", "--seed", "1"]) == 0
    assert main(["train", "encoder", "--data", str(data), "--out", str(enc),
                 "--config", str(REPO / "configs/tiny/lightgcn.yaml")]) == 0
    assert main(["train", "explainer", "--method", "xrec", "--data", str(data), "--encoder", str(enc),
                 "--out", str(expl), "--config", str(REPO / "configs/tiny/xrec.yaml")]) == 0
    return root


# ---- the other methods: folders written by each method's own save function around untrained tiny
# parts (random tiny Llama, random VAE / MF target), so each builds in seconds. Serving reads only
# the folder, so an untrained model exercises the same code as a trained one.
USERS, ITEMS = [f"u{k}" for k in range(6)], [f"i{k}" for k in range(10)]
TITLES = {i: f"Film {chr(65 + k)}" for k, i in enumerate(ITEMS)}
SEEN = {u: ITEMS[k:k + 3] for k, u in enumerate(USERS)}  # each user's known items


def _tiny_model():
    from whyrec.config import ModelConfig

    return ModelConfig("tiny-random-llama", device="cpu", dtype="float32")


def _cached(tmp_path_factory, name: str, build) -> Path:
    root = tmp_path_factory.getbasetemp() / f"serve-tiny-{name}"
    if not (root / "config.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        build(root)
    return root


def tiny_gavamoe(tmp_path_factory) -> Path:
    def build(root):
        import pandas as pd
        import torch

        from whyrec.config import TrainConfig, VaeGmmConfig
        from whyrec.encoders.vae_gmm import VaeGmm, load_vae_gmm, save_vae_gmm
        from whyrec.methods.gavamoe import artifact as GT
        from whyrec.methods.gavamoe.model import GaVaMoEConfig

        torch.manual_seed(0)
        cfg = VaeGmmConfig(feedback="ratings", n_clusters=2, latent_dim=4, embedding_dim=8, n_layers=1, n_heads=2, ff_dim=16,
                           decoder_dims=(8,))
        vae_dir = root.with_name(root.name + "-vae")
        save_vae_gmm(VaeGmm(cfg, len(USERS), len(ITEMS)), vae_dir, {u: k for k, u in enumerate(USERS)},
                     {i: k for k, i in enumerate(ITEMS)})
        vae, model, gcfg = load_vae_gmm(vae_dir), _tiny_model(), GaVaMoEConfig(n_experts=2, top_k=1)
        pairs = pd.DataFrame([{"user": u, "item": i, "rating": 4.0} for u, items in SEEN.items() for i in items])
        expl = GT.GaVaMoEExplainer(GT.build_gavamoe(model, gcfg, vae), vae, TITLES, pairs, {})
        GT.save_gavamoe(root, expl, str(vae_dir), model, gcfg, TrainConfig(), {"steps": 0}, "tiny")

    return _cached(tmp_path_factory, "gavamoe", build)


def tiny_pepler(tmp_path_factory, variant: str) -> Path:
    def build(root):
        from dataclasses import asdict

        import torch

        from whyrec.config import PEPLERConfig
        from whyrec.llm.load import load_model
        from whyrec.methods.pepler.artifact import save_pepler
        from whyrec.methods.pepler.model import PEPLER

        torch.manual_seed(0)
        model, cfg = _tiny_model(), PEPLERConfig(variant=variant, words=5, epochs_phase2=0)
        module = PEPLER(*load_model(model), len(USERS), len(ITEMS), cfg)
        feats = {"user": {u: ["plot"] for u in USERS}, "item": {i: ["score"] for i in ITEMS}}
        save_pepler(module, root, {"method": "pepler", "model": asdict(model), "pepler": asdict(cfg),
                                   "n_users": len(USERS), "n_items": len(ITEMS), "rating_range": [1.0, 5.0],
                                   "dataset": "tiny"},
                    {u: k for k, u in enumerate(USERS)}, {i: k for k, i in enumerate(ITEMS)}, feats)

    return _cached(tmp_path_factory, f"pepler-{variant}", build)


def tiny_recexplainer(tmp_path_factory) -> Path:
    def build(root):
        import numpy as np
        import torch

        from whyrec.config import MFConfig
        from whyrec.encoders.mf import MF
        from whyrec.encoders.target_model import TargetModel, load_target, save_target
        from whyrec.llm.load import load_model
        from whyrec.methods.recexplainer.model import RecExplainer, RecExplainerConfig
        from whyrec.methods.recexplainer.train import save_recexplainer

        torch.manual_seed(0)
        item2idx = {i: k for k, i in enumerate(ITEMS)}
        hist = [np.array([item2idx[i] for i in SEEN[u]]) for u in USERS]
        indptr = np.cumsum([0] + [len(h) for h in hist])
        target_dir = root.with_name(root.name + "-target")
        save_target(TargetModel("mf", MF(MFConfig(dim=8), len(USERS), len(ITEMS)), {u: k for k, u in enumerate(USERS)},
                                item2idx, indptr, np.concatenate(hist), TITLES), target_dir)
        model, cfg = _tiny_model(), RecExplainerConfig(mode="hybrid", connector_hidden=16)
        module = RecExplainer(*load_model(model), load_target(target_dir), cfg)
        save_recexplainer(module, root, str(target_dir), model, cfg, {"steps": 0, "train_examples": 0})

    return _cached(tmp_path_factory, "recexplainer", build)


def tiny_recalpaca(tmp_path_factory) -> Path:
    def build(root):
        import json
        from dataclasses import asdict

        import torch
        from peft import LoraConfig, get_peft_model

        from whyrec.llm.load import load_model

        torch.manual_seed(0)
        data = root.with_name(root.name + "-instructions")
        data.mkdir(parents=True)
        titles = list(TITLES.values())
        records = [{"user": u, "instruction": "Recommend movies.", "input": f"Liked {titles[k]}. Choose from: "
                    + ", ".join(f'"{t}"' for t in titles), "output": "", "candidates": titles,
                    "candidate_items": ITEMS, "top1": titles[0], "top1_item": ITEMS[0]} for k, u in enumerate(USERS)]
        (data / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (data / "run.json").write_text("{}")
        model = _tiny_model()
        llm, _ = load_model(model)
        get_peft_model(llm, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])).save_pretrained(root)
        adapter = json.loads((root / "adapter_config.json").read_text())
        (root / "adapter_config.json").write_text(json.dumps({**adapter, "base_model_name_or_path": model.name_or_path}))
        (root / "README.md").unlink(missing_ok=True)
        (root / "config.json").write_text(json.dumps({"method": "recalpaca", "base_model": asdict(model), "config": {},
                                                      "instructions": [str(data)]}))

    return _cached(tmp_path_factory, "recalpaca", build)
