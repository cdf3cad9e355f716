"""`whyrec.llm.target_loss`: HF's causal-LM loss with the LM head on the label positions only."""

import pytest
import torch

from whyrec.config import ModelConfig
from whyrec.llm.load import load_model
from whyrec.llm.target_loss import target_loss

TINY = ModelConfig("tiny-random-llama", device="cpu", dtype="float32")


def _lora(targets=("q_proj", "k_proj", "v_proj", "o_proj"), modules_to_save=None):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    llm, _ = load_model(TINY)
    # init_lora_weights=False: random A and B, so the LoRA changes the output and both get gradients
    return get_peft_model(llm, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), lora_dropout=0.0,
                                          modules_to_save=modules_to_save, init_lora_weights=False))


def _batch(vocab: int, side: str, seed: int = 1) -> dict:
    """Three rows of different lengths, padded on `side`; labels -100 on each prompt and the padding."""
    g = torch.Generator().manual_seed(seed)
    lengths, prompts, width = [9, 5, 12], [4, 2, 7], 12
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    labels = torch.full((3, width), -100, dtype=torch.long)
    for b, (n, p) in enumerate(zip(lengths, prompts)):
        row = torch.randint(3, vocab, (n,), generator=g)
        cols = slice(0, n) if side == "right" else slice(width - n, width)
        ids[b, cols], mask[b, cols] = row, 1
        labels[b, cols] = torch.cat([torch.full((p,), -100), row[p:]])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _lora_grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _hf_and_ours(model, batch, num_items=None):
    """(loss, LoRA grads) from HF's loss and from target_loss on the same batch."""
    kw = {} if num_items is None else {"num_items_in_batch": num_items}
    out = []
    for run in (lambda: model(**batch, **kw).loss,
                lambda: target_loss(model, batch["labels"], num_items, input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"])):
        model.zero_grad()
        loss = run()
        loss.backward()
        out.append((loss.detach(), _lora_grads(model)))
    return out


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("num_items", [None, 57])
def test_loss_and_lora_grads_equal_hf(side, num_items):
    model = _lora()
    batch = _batch(model.config.vocab_size, side)
    (hf_loss, hf_grads), (loss, grads) = _hf_and_ours(model, batch, num_items)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, hf_loss, atol=1e-5, rtol=1e-5)
    lora = [n for n in grads if "lora_" in n]
    assert len(lora) == 2 * 4 * model.config.num_hidden_layers  # A and B of q,k,v,o in every layer
    assert set(grads) == set(hf_grads)
    for n in grads:
        assert grads[n].abs().sum() > 0, n
        assert torch.allclose(grads[n], hf_grads[n], atol=1e-5, rtol=1e-4), n


def test_lora_on_lm_head_and_modules_to_save_reach_the_head():
    """RecAlpaca's tiny config puts LoRA on lm_head; RecExplainer may train lm_head in full."""
    for model in (_lora(targets=("q_proj", "v_proj", "lm_head")),
                  _lora(targets=("q_proj",), modules_to_save=["lm_head"])):
        (hf_loss, hf_grads), (loss, grads) = _hf_and_ours(model, _batch(model.config.vocab_size, "right"))
        assert torch.allclose(loss, hf_loss, atol=1e-5, rtol=1e-5)
        head = [n for n in grads if "lm_head" in n]
        assert head, "the head's trainable weights got no gradient"
        for n in grads:
            assert torch.allclose(grads[n], hf_grads[n], atol=1e-5, rtol=1e-4), n


def test_num_items_in_batch_scales_the_sum():
    model = _lora()
    batch = _batch(model.config.vocab_size, "right")
    n_labels = int((batch["labels"][:, 1:] != -100).sum())
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        mean = target_loss(model, batch["labels"], **inputs)
        for n in (n_labels, 3 * n_labels, torch.tensor(2 * n_labels)):
            scaled = target_loss(model, batch["labels"], n, **inputs)
            assert torch.allclose(scaled, mean * n_labels / n, atol=1e-6)
            assert torch.allclose(scaled, model(**batch, num_items_in_batch=n).loss, atol=1e-6)


def test_head_runs_on_label_positions_only():
    model = _lora()
    batch = _batch(model.config.vocab_size, "left")
    rows_seen = []
    head = model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda m, args, out: rows_seen.append(args[0].shape[:-1]))
    with torch.no_grad():
        target_loss(model, batch["labels"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    handle.remove()
    assert rows_seen == [torch.Size([int((batch["labels"][:, 1:] != -100).sum())])]  # 5 + 3 + 5, not 3 x 12


def test_soft_capped_head_takes_hf_path():
    """A head whose logits are not a plain linear map (Gemma-2 soft-capping) must not be bypassed."""
    model = _lora()
    model.get_base_model().config.final_logit_softcapping = 30.0
    batch = _batch(model.config.vocab_size, "right")
    calls = []
    handle = model.register_forward_hook(lambda m, args, out: calls.append(1))
    with torch.no_grad():
        loss = target_loss(model, batch["labels"], input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"])
    handle.remove()
    assert calls == [1] and torch.isfinite(loss)


def test_recalpaca_trainer_uses_target_loss(tmp_path):
    """The RecAlpaca Trainer's training loss equals HF's and runs the head on response tokens only."""
    from transformers import TrainingArguments

    from whyrec.methods.recalpaca.train import _trainer_class

    model = _lora()
    batch = _batch(model.config.vocab_size, "right")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = _trainer_class()(model=model, args=args)
    rows_seen = []
    head = model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda m, a, out: rows_seen.append(a[0].shape[:-1].numel()))
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=40)
        hf = model(**batch, num_items_in_batch=40).loss
    handle.remove()
    assert torch.allclose(ours, hf, atol=1e-6)
    assert rows_seen[0] == int((batch["labels"][:, 1:] != -100).sum())
