"""GaVaMoE stage 1 VAE-GMM: per-pair encoding, VaDE prior, GMM init, training, resume, artifacts."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from whyrec.data.dataset import RecDataset
from whyrec.encoders import vae_train
from whyrec.encoders.vae_gmm import VaeGmm, VaeGmmConfig, load_vae_gmm, save_vae_gmm
from whyrec.encoders.vae_train import cluster_command, latent_means, train_vae_gmm
from whyrec.utils import WhyrecError

TINY = VaeGmmConfig(feedback="ratings", n_clusters=2, latent_dim=4, embedding_dim=8, n_layers=1, n_heads=2, ff_dim=16,
                    decoder_dims=(16,), pretrain_epochs=4, pretrain_lr=1e-2, pretrain_batch_size=64,
                    elbo_epochs=4, lr=5e-3, batch_size=64, recon_weight=16.0, plot_points_per_cluster=40, seed=0)


def two_group_dataset(tmp_path, rating_col: bool = True) -> str:
    """20 users over 10 shared items: group 0 rates high (4.6-5), group 1 low (1-1.4); 8/1/1 split."""
    rng = np.random.default_rng(0)
    rows = []
    for group, base in ((0, 5.0), (1, 1.0)):
        for u in range(10):
            splits = ["train"] * 8 + ["valid", "test"]
            for i, s in zip(rng.permutation(10), splits, strict=True):
                jitter = rng.uniform(0, 0.4)
                rows.append((f"g{group}u{u}", f"i{i}", base - jitter if group == 0 else base + jitter, s))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "split"])
    if not rating_col:
        frame = frame.drop(columns="rating")
    path = tmp_path / ("data" if rating_col else "norating")
    RecDataset(interactions=frame, items=None, users=None).save(path)
    return str(path)


def tiny_model(n_users=6, n_items=5, config=TINY) -> VaeGmm:
    torch.manual_seed(0)
    return VaeGmm(config, n_users, n_items).eval()


# ------------------------------------------------------------------ model
def test_each_pair_is_encoded_on_its_own():
    model = tiny_model()
    a_users, a_items = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3])
    b_users, b_items = torch.tensor([5, 0, 4]), torch.tensor([4, 0, 1])  # (0, 0) with other batch-mates
    mu_a, logvar_a = model.encode(a_users, a_items)
    mu_b, logvar_b = model.encode(b_users, b_items)
    mu_alone, _ = model.encode(torch.tensor([0]), torch.tensor([0]))
    torch.testing.assert_close(mu_a[0], mu_b[1])
    torch.testing.assert_close(logvar_a[0], logvar_b[1])
    torch.testing.assert_close(mu_a[0], mu_alone[0])
    assert not torch.allclose(mu_a[0], mu_a[1])  # and pairs do differ


def test_paper_config_builds_on_meta_device():
    with torch.device("meta"):
        model = VaeGmm(VaeGmmConfig(feedback="ratings"), n_users=27_147, n_items=20_266)
        mu, logvar = model.encode(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    assert model.user_emb.weight.shape == (27_147, 768)
    assert model.mu_head.in_features == 1536 and model.mu_head.out_features == 128
    assert model.mu_c.shape == model.logvar_c.shape == (5, 128) and model.pi_logits.shape == (5,)
    assert mu.shape == logvar.shape == (3, 128) and mu.device.type == "meta"
    assert VaeGmmConfig().reconstruction_weight() == 1536


def test_kl_weight_schedule():
    c = VaeGmmConfig()
    assert [round(c.kl_weight(e), 6) for e in (0, 4, 5, 9, 10, 29)] == [0.01, 0.01, 0.015, 0.015, 0.02, 0.035]
    assert c.kl_weight(1000) == pytest.approx(0.1)


def _set_prior(model, pi, mu_c, var_c):
    model.init_prior(np.array(pi), np.array(mu_c), np.array(var_c))


def test_responsibilities_use_log_pi_by_hand():
    model = VaeGmm(replace(TINY, latent_dim=2), 2, 2)
    pi, mu_c, var_c = [0.1, 0.9], [[0.0, 0.0], [2.0, 1.0]], [[1.0, 0.5], [2.0, 1.0]]
    _set_prior(model, pi, mu_c, var_c)
    z = torch.tensor([[0.3, -0.2], [1.5, 0.8]])
    log_n = np.array([[sum(-0.5 * math.log(2 * math.pi * v) - 0.5 * (zd - m) ** 2 / v
                           for zd, m, v in zip(zz, mc, vc, strict=True))
                       for mc, vc in zip(mu_c, var_c, strict=True)] for zz in z.tolist()])
    joint = np.log(pi) + log_n
    expected = joint - np.log(np.exp(joint).sum(1, keepdims=True))
    torch.testing.assert_close(model.log_responsibilities(z), torch.tensor(expected, dtype=torch.float32))


def test_assignment_uses_log_pi_not_pi():
    """log N favours c0 by 1.5 nats: π_c + log N (the original) picks c0, log π_c + log N picks c1."""
    model = VaeGmm(replace(TINY, latent_dim=1), 2, 2)
    _set_prior(model, [0.1, 0.9], [[-1.0], [1.0]], [[1.0], [1.0]])
    z = torch.tensor([[-0.75]])  # log N(z|c0) - log N(z|c1) = ((z - 1)^2 - (z + 1)^2) / 2 = -2z = 1.5
    log_n = [-0.5 * (math.log(2 * math.pi) + (z.item() - m) ** 2) for m in (-1.0, 1.0)]
    assert log_n[0] - log_n[1] == pytest.approx(1.5)
    assert log_n[0] + 0.1 > log_n[1] + 0.9  # the original's score: c0
    assert log_n[0] + math.log(0.1) < log_n[1] + math.log(0.9)  # the intended score: c1
    assert model.log_responsibilities(z).argmax(1).item() == 1
    assert model.assign(torch.tensor([0]), torch.tensor([0])).shape == (1,)


def test_kl_matches_the_vade_formula():
    model = VaeGmm(replace(TINY, latent_dim=2), 2, 2)
    pi, mu_c, var_c = np.array([0.3, 0.7]), np.array([[0.0, 1.0], [1.0, -1.0]]), np.array([[1.0, 2.0], [0.5, 1.0]])
    _set_prior(model, pi, mu_c, var_c)
    mu, logvar, z = torch.tensor([[0.2, 0.1]]), torch.tensor([[-0.5, 0.3]]), torch.tensor([[0.4, -0.2]])
    gamma = model.log_responsibilities(z).exp().detach().double().numpy()[0]
    m, lv = mu.double().numpy()[0], logvar.double().numpy()[0]
    term = sum(gamma[c] * (np.log(var_c[c]) + np.exp(lv) / var_c[c] + (m - mu_c[c]) ** 2 / var_c[c]).sum()
               for c in range(2))
    expected = 0.5 * term - (gamma * np.log(pi / gamma)).sum() - 0.5 * (1 + lv).sum()
    assert model.kl(z, mu, logvar).item() == pytest.approx(expected, rel=1e-5)


def test_assignment_from_mu_is_deterministic():
    model = tiny_model()
    _set_prior(model, [0.5, 0.5], np.random.default_rng(0).normal(size=(2, 4)), np.ones((2, 4)))
    users, items = torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 0])
    first, second = model.assign(users, items), model.assign(users, items)
    assert torch.equal(first, second)
    mu, _ = model.encode(users, items)
    assert torch.equal(first, model.log_responsibilities(mu).argmax(1))
    sampled = model.assign(users, items, sample=True, generator=torch.Generator().manual_seed(1))
    assert sampled.shape == first.shape and sampled.dtype == torch.long


# ------------------------------------------------------------------ artifact
def test_save_load_round_trip_and_unknown_ids(tmp_path):
    model = tiny_model()
    _set_prior(model, [0.3, 0.7], np.random.default_rng(1).normal(size=(2, 4)), np.full((2, 4), 0.5))
    user2idx, item2idx = {f"u{i}": i for i in range(6)}, {f"i{i}": i for i in range(5)}
    save_vae_gmm(model, tmp_path / "vae", user2idx, item2idx)
    art = load_vae_gmm(tmp_path / "vae")
    assert (art.n_clusters, art.dim, art.config) == (2, 8, TINY)
    users, items = ["u0", "u3", "u5", "u1"], ["i4", "i0", "i2", "i2"]
    expected = model.assign(torch.tensor([0, 3, 5, 1]), torch.tensor([4, 0, 2, 2]))
    assert torch.equal(art.cluster(users, items), expected)
    u_vec, i_vec = art.vectors(users, items)
    torch.testing.assert_close(u_vec, model.user_emb.weight[[0, 3, 5, 1]].detach())
    torch.testing.assert_close(i_vec, model.item_emb.weight[[4, 0, 2, 2]].detach())
    assert u_vec.shape == (4, art.dim)
    with pytest.raises(WhyrecError, match="unknown user 'nobody'"):
        art.cluster(["u0", "nobody"], ["i0", "i0"])
    with pytest.raises(WhyrecError, match="unknown item 'x'"):
        art.vectors(["u0"], ["x"])
    with pytest.raises(WhyrecError, match="one item per user"):
        art.cluster(["u0"], ["i0", "i1"])
    with pytest.raises(WhyrecError, match="not found"):
        load_vae_gmm(tmp_path / "missing")


# ------------------------------------------------------------------ training
def test_training_writes_artifact_png_and_metrics(tmp_path):
    data = two_group_dataset(tmp_path)
    out = tmp_path / "run"
    summary = cluster_command(data, str(out), TINY, device="cpu")
    for name in ("config.json", "model.safetensors", "user2idx.json", "item2idx.json", "metrics.json",
                 "run_config.json", "README.md", "latent.png", "checkpoint/checkpoint.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "latent.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(metrics["cluster_sizes"]) == 160 and len(metrics["cluster_sizes"]) == 2
    for split in ("valid", "test"):
        assert metrics[split]["n"] == 20 and 0 <= metrics[split]["accuracy"] <= 1 and metrics[split]["rmse"] >= 0
    assert metrics["pretrain_epochs_run"] == 4 and metrics["elbo_epochs_run"] == 4
    assert summary["cluster_sizes"] == metrics["cluster_sizes"] and summary["valid"]["n"] == 20
    # the saved model assigns the training pairs to the reported clusters
    art = load_vae_gmm(out)
    ds = RecDataset.load(data)
    train = ds.split("train")
    clusters = art.cluster(train["user"].tolist(), train["item"].tolist())
    assert torch.bincount(clusters, minlength=2).tolist() == metrics["cluster_sizes"]
    # a finished folder is reused, not retrained
    assert train_vae_gmm(data, str(out), TINY, device="cpu", progress=False) == metrics


def test_elbo_decreases_on_two_groups(tmp_path):
    data = two_group_dataset(tmp_path)
    config = replace(TINY, elbo_epochs=8, kl_weight_step=0.0, kl_weight_start=0.05, lr=1e-2)
    metrics = train_vae_gmm(data, str(tmp_path / "run"), config, device="cpu", progress=False)
    losses = [r["loss"] for r in metrics["history"]["elbo"]]
    assert losses[-1] < losses[0], losses
    ces = [r["ce"] for r in metrics["history"]["pretrain"]]
    assert ces[-1] < ces[0], ces


def test_gmm_initialisation_equals_sklearn_fit(tmp_path):
    from sklearn.mixture import GaussianMixture

    data = two_group_dataset(tmp_path)
    out = tmp_path / "run"
    train_vae_gmm(data, str(out), replace(TINY, elbo_epochs=0), device="cpu", progress=False)
    art = load_vae_gmm(out)
    pairs = vae_train._load_data(data, "cpu").splits["train"]
    mu = latent_means(art.model, pairs).double().numpy()
    gmm = GaussianMixture(n_components=2, covariance_type="diag", random_state=TINY.seed).fit(mu)
    model = art.model
    np.testing.assert_allclose(model.log_pi().exp().detach().numpy(), gmm.weights_, rtol=1e-5)
    np.testing.assert_allclose(model.mu_c.detach().numpy(), gmm.means_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.logvar_c.exp().detach().numpy(), gmm.covariances_, rtol=1e-5)
    # and the log σ² head starts as a copy of the μ head (the original's choice)
    torch.testing.assert_close(model.logvar_head.weight, model.mu_head.weight)


@pytest.mark.parametrize("phase", ["pretrain", "elbo"])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch, phase):
    data = two_group_dataset(tmp_path)
    train_vae_gmm(data, str(tmp_path / "full"), TINY, device="cpu", progress=False)

    name = f"_{phase}_epoch"
    real = getattr(vae_train, name)

    def interrupted(model, opt, train, config, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(model, opt, train, config, epoch)

    monkeypatch.setattr(vae_train, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_vae_gmm(data, str(tmp_path / "cut"), TINY, device="cpu", progress=False)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "cut" / vae_train.CHECKPOINT), framework="pt") as f:
        state = json.loads(f.metadata()["state"])
    assert (state["phase"], state["epoch"]) == (phase, 2)
    assert not (tmp_path / "cut" / "metrics.json").exists()

    monkeypatch.setattr(vae_train, name, real)
    metrics = train_vae_gmm(data, str(tmp_path / "cut"), TINY, device="cpu", progress=False)
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for key, value in full.items():
        torch.testing.assert_close(cut[key], value, msg=key)
    assert metrics["elbo_epochs_run"] == 4 and len(metrics["history"]["pretrain"]) == 4


def test_more_elbo_epochs_extend_a_finished_run(tmp_path):
    data = two_group_dataset(tmp_path)
    train_vae_gmm(data, str(tmp_path / "full"), TINY, device="cpu", progress=False)
    train_vae_gmm(data, str(tmp_path / "ext"), replace(TINY, elbo_epochs=2), device="cpu", progress=False)
    metrics = train_vae_gmm(data, str(tmp_path / "ext"), TINY, device="cpu", progress=False)
    assert [r["epoch"] for r in metrics["history"]["elbo"]] == [1, 2, 3, 4]
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    ext = load_file(str(tmp_path / "ext" / "model.safetensors"))
    for key, value in full.items():
        torch.testing.assert_close(ext[key], value, msg=key)


def test_data_errors(tmp_path):
    with pytest.raises(WhyrecError, match="no 'rating' column"):
        train_vae_gmm(two_group_dataset(tmp_path, rating_col=False), str(tmp_path / "o"), TINY, device="cpu")
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [3.0, 7.0], "split": ["train", "test"]})
    RecDataset(interactions=frame, items=None, users=None).save(tmp_path / "bad")
    with pytest.raises(WhyrecError, match="must round to 1..5"):
        train_vae_gmm(str(tmp_path / "bad"), str(tmp_path / "o2"), TINY, device="cpu")
