"""The collaborative models `whyrec benchmark explain` trains for its rows when none is given.

A method names the kind it reads in `benchmark_encoder`: "lightgcn" (XRec; also the retrieval
baseline's neighbours), "vae_gmm" (GaVaMoE's stage 1) or "target" (the recommender RecExplainer is
aligned to explain). Each is trained once per benchmark folder into out/<kind folder>, keyed by its
config and the data, and retrained (then swapped in) when either changes.

The target is an MF model, RecExplainer's default, trained on the benchmark's training split only
(out/target-data), as LightGCN and the VAE are: the benchmark's test pairs are interactions no
collaborative model of any row has seen. Target training re-splits what it is given leave-last-out
for its own early stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from whyrec.benchmark_cache import settings, trained_folder
from whyrec.config import LightGCNConfig, VaeGmmConfig
from whyrec.config_encoders import MFConfig
from whyrec.data import schema as S


def encoder_trainers(out_dir: Path, data: str, data_id: str, device: str, lightgcn: LightGCNConfig,
                     vae: VaeGmmConfig, mf: MFConfig) -> dict[str, Callable[[], str]]:
    """Kind -> a function training (or reusing) that kind's model under `out_dir`; it returns the folder."""

    def train_lightgcn() -> str:
        from whyrec.encoders.train import train_encoder

        final = out_dir / "encoder"
        trained_folder(final, {"data": data_id, "lightgcn": settings(lightgcn)},
                       lambda work: train_encoder(data=data, out=work, config=lightgcn, device=device), "encoder")
        return str(final)

    def train_vae() -> str:
        from whyrec.encoders.vae_train import train_vae_gmm

        final = out_dir / "vae"
        trained_folder(final, {"data": data_id, "vae": settings(vae)},
                       lambda work: train_vae_gmm(data, work, vae, device=device), "vae")
        return str(final)

    def train_target() -> str:
        from whyrec.encoders.target_train import train_target as _train

        final = out_dir / "target"

        def build(work) -> dict:
            train_only = training_split(data, out_dir / "target-data")
            return _train(str(train_only), str(work), encoder="mf", config=mf, device=device, progress=True)

        trained_folder(final, {"data": data_id, "target": "mf", "mf": settings(mf)}, build, "target")
        return str(final)

    return {"lightgcn": train_lightgcn, "vae_gmm": train_vae, "target": train_target}


def training_split(data: str, out: Path) -> Path:
    """`data` with its training interactions only (every id, item and profile kept), written to `out`."""
    from whyrec.data.dataset import RecDataset

    ds = RecDataset.load(data)
    ds.interactions = ds.interactions[ds.interactions[S.SPLIT] == S.TRAIN].drop(columns=S.SPLIT).reset_index(drop=True)
    ds.save(out)
    return out
