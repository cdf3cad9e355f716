"""What every method's training shares (torch-free): the fingerprint that guards an output folder."""

from __future__ import annotations

from whyrec.config import ModelConfig, TrainConfig


def training_fingerprint(data: str, encoder: str | None, method: str, model: ModelConfig, method_configs: dict,
                         train: TrainConfig) -> dict:
    """What decides an explainer's weights: method, backbone, method and train config (without
    device, logging, time limits or the step budget), and the content of the data and encoder.
    Under a decaying `lr_schedule` every step's rate depends on the planned steps, so there the
    budget is kept: a run resumed with another budget would not be the run trained with it."""
    from whyrec.identity import model_key
    from whyrec.outputs import BUDGET_FIELDS, HARMLESS_FIELDS, fingerprint_of, folder_digest

    # model_key: the backbone's weights too, so a local model retrained in place is not resumed onto
    return {"method": method, "model": model_key(model), **fingerprint_of(method_configs),
            "train": fingerprint_of(train, HARMLESS_FIELDS + (BUDGET_FIELDS if train.lr_schedule == "constant" else ())),
            "data": folder_digest(data),
            "encoder": folder_digest(encoder) if encoder else None}


def saved_configs(meta: dict, section: str, config_class: type, device: str = "auto") -> tuple[ModelConfig, object]:
    """The ModelConfig (on `device` unless "auto": the saved one) and the method config (`section`
    of config.json, its LoRA settings rebuilt) of a saved XRec or GaVaMoE folder. A config.json
    saved before `item_facts` existed was trained without the slot: it stays off whatever the
    current default, so the folder prompts exactly as it was trained."""
    from whyrec.config import LoraConfig

    model = ModelConfig(**meta["model"])
    model.device = device if device != "auto" else model.device
    saved = meta[section]
    cfg = config_class(**{"item_facts": False, **{k: v for k, v in saved.items() if k != "lora"}})
    cfg.lora = LoraConfig(**saved.get("lora", {}))
    return model, cfg
