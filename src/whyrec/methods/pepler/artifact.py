"""PEPLER's run folder: `save_pepler` writes it, `load_pepler_run` reads it back."""

from __future__ import annotations

import torch

from whyrec.config import ModelConfig, PEPLERConfig
from whyrec.methods.pepler.model import PEPLER

# ---------------------------------------------------------------- artifact folder
#   out/ config.json  prompt.safetensors (ID prompts, rating head)  lm/ (only if the LM trained)
#        user2idx.json item2idx.json features.json  training_log.json run_config.json README.md


def save_pepler(module: PEPLER, out_dir, config: dict, user2idx: dict, item2idx: dict, feats: dict) -> None:
    from safetensors.torch import save_file

    from whyrec.utils import write_json

    lm_trained = module.cfg.variant != "continuous" or module.cfg.epochs_phase2 > 0
    if lm_trained:  # a full fine-tune: the LM is an ordinary HF folder
        module.llm.save_pretrained(out_dir / "lm")
        module.tokenizer.save_pretrained(out_dir / "lm")
    save_file(module.extra_state() or {"_empty": torch.zeros(0)}, out_dir / "prompt.safetensors")
    write_json(out_dir / "user2idx.json", user2idx)
    write_json(out_dir / "item2idx.json", item2idx)
    write_json(out_dir / "features.json", feats)
    write_json(out_dir / "config.json", {**config, "lm_saved": lm_trained, "complete": True})
    (out_dir / "README.md").write_text(
        f"# whyrec PEPLER ({module.cfg.variant})\n\nLi, Zhang, Chen, *Personalized Prompt Learning for "
        f"Explainable Recommendation*, TOIS 2023. Backbone `{config['model']['name_or_path']}`"
        f"{' fine-tuned in `lm/`' if lm_trained else ' (frozen)'}; ID prompts and rating head in "
        "`prompt.safetensors`.\n\nLoad with `whyrec.methods.pepler.load_pepler_run(path)`.\n")


def load_pepler_run(path, device: str = "auto") -> tuple[PEPLER, dict]:
    """(module, config) from a folder written by `train_pepler`."""
    from pathlib import Path

    from safetensors.torch import load_file

    from whyrec.folders import check_run, weights_fit
    from whyrec.llm.load import load_model
    from whyrec.utils import WhyrecError, read_json

    path = check_run(Path(path))  # config, weight headers and id maps checked before any model is built
    cfg = read_json(path / "config.json")
    if not cfg.get("complete") or cfg.get("method") != "pepler":
        raise WhyrecError(f"{path} is not a complete PEPLER folder; train one with train_pepler")
    model = ModelConfig(**cfg["model"])
    model.device = device if device != "auto" else model.device
    if cfg["lm_saved"]:
        model.name_or_path, model.gguf_file = str(path / "lm"), None
    llm, tok = load_model(model, trains_weights=True)  # PEPLER fine-tunes the LM itself: fp32 under auto
    module = PEPLER(llm, tok, cfg["n_users"], cfg["n_items"], PEPLERConfig(**cfg["pepler"]))
    weights = {k: v for k, v in load_file(path / "prompt.safetensors").items() if k != "_empty"}
    with weights_fit(path):
        result = module.load_state_dict(weights, strict=False)
    if result.unexpected_keys or [k for k in result.missing_keys if not k.startswith("llm.")]:
        raise WhyrecError(f"{path}/prompt.safetensors does not match its config.json")
    cfg.update(user2idx=read_json(path / "user2idx.json"), item2idx=read_json(path / "item2idx.json"),
               features=read_json(path / "features.json"))
    return module.eval(), cfg
