"""RecAlpaca's registered method object (`whyrec.registry.METHODS["recalpaca"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.methods.base import served_options
from whyrec.methods.recalpaca.config import RecAlpacaConfig


class RecAlpacaMethod:
    name = "recalpaca"
    config_class = RecAlpacaConfig
    needs_encoder = None

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: RecAlpacaConfig, resume: bool = True, overwrite: bool = False) -> dict:
        """`data`: instruction data, comma-separated (`whyrec data instructions` folders or Alpaca
        JSON/JSONL files); `train` is not passed: RecAlpacaConfig carries the HF Trainer's settings."""
        from whyrec.methods.recalpaca.train import train_recalpaca

        sources = [p.strip() for p in data.split(",") if p.strip()]
        return train_recalpaca(sources if len(sources) > 1 else sources[0], out, model=model, cfg=config,
                               resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        from whyrec.methods.recalpaca.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (RecAlpacaModel) of a folder `check` accepted; options: generation."""
        generation = served_options(self.name, options)
        from whyrec.folders import weights_fit
        from whyrec.methods.recalpaca.served import RecAlpacaModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return RecAlpacaModel(Path(folder), device=device, generation=generation)

    def recommend_with_reasons(self, run: str, user: str, k: int, *, device: str = "auto",
                               instructions: str | None = None, max_new_tokens: int = 400) -> list[dict]:
        """The LLM picks k of the user's LightGCN candidates with a reason each (rows: title, reason,
        from_model); `instructions` defaults to the instruction folder the run was trained on."""
        from whyrec.folders import read_config
        from whyrec.methods.recalpaca.instructions.lookup import user_prompt
        from whyrec.methods.recalpaca.model import load_recalpaca
        from whyrec.utils import WhyrecError

        if instructions is None:
            sources = read_config(Path(run) / "config.json").get("instructions") or []
            folders = [s for s in sources if Path(s).is_dir()]
            if not folders:
                raise WhyrecError(f"{run} was not trained on an instruction folder; pass --instructions FOLDER")
            instructions = folders[0]
        prompt = user_prompt(instructions, user)
        # Fillers follow the prompt's own ranking hint: its named first pick, then the listed order.
        cands = [prompt["top1"]] + [c for c in prompt["candidates"] if c != prompt["top1"]]
        return load_recalpaca(run, device=device).recommend(prompt["instruction"], prompt["input"], cands, k=k,
                                                            max_new_tokens=max_new_tokens)


METHOD = RecAlpacaMethod()
