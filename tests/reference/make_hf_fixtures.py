#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for velocity's model tests.

For each case this builds a tiny random-weight model with transformers' own classes, computes
the greedy continuation of a fixed prompt and the logits of every position in float64 on the
CPU, and writes a Hugging Face model directory that `velocity convert` (tools/convert.h) turns
into GGUF:

  <out>/<case>/config.json            hub-style: rope_theta + rope_scaling at the top level
  <out>/<case>/generation_config.json as save_pretrained writes it
  <out>/<case>/model.safetensors      F32, hub tensor names (per-expert MoE tensors, Mixtral's
                                      block_sparse_moe.*), no lm_head.weight when tied
  <out>/<case>/tokenizer.json         byte-level BPE: 256 byte tokens (id = byte value, GPT-2
                                      byte-to-unicode alphabet), merges learnt from TRAIN_TEXT,
                                      then the special tokens; vocab size = config.vocab_size
  <out>/<case>/tokenizer_config.json
  <out>/<case>/reference.json         prompt, greedy continuation, margins, versions, notes
  <out>/<case>/logits.bin             float32 little-endian [n_positions, n_vocab], row-major

Row i of logits.bin is the model's output after input_ids[i] at position i (input_ids =
prompt_ids + generated_ids[:-1]), i.e. the distribution of token i+1 of prompt+generated; for
i >= len(prompt_ids)-1 its argmax is generated_ids[i-len(prompt_ids)+1].

Why the weights are scaled the way they are: with the stock initializer (std 0.02) a tiny model's
logits are almost uniform, top-2 margins ~1e-5, and any argmax comparison is noise. Here every
linear weight [out, in] is N(0, 1/in) (unit-variance outputs on unit-variance inputs), the
untied LM head N(0, 4/in) (logits std ~2), token embeddings N(0, 0.25^2) (logits std ~2 when
tied), RMSNorm weights U(0.5, 1.5) (ones would hide a missing or misplaced norm), biases
N(0, 0.2^2) and router weights N(0, 1/in). The summary prints the margins this gives.

The written files are checked: the directory is loaded back with from_pretrained (which must
report no missing or unexpected tensors) and must reproduce the reference logits exactly.

Run (on a machine with torch, transformers, tokenizers, safetensors; CPU only, seconds):
  python3 tests/reference/make_hf_fixtures.py --out tests/fixtures/hf
"""

import argparse
import collections
import copy
import inspect
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import traceback

import torch

SEED = 20260101
N_PROMPT = 16
N_GENERATE = 64
N_VOCAB = 320
SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]  # ids 316..319

# Short English text the BPE merges are learnt from (any text would do; this one is fixed so the
# tokenizer is reproducible).
TRAIN_TEXT = """\
The river runs past the old mill and under the stone bridge, then turns toward the sea. In the
morning the fishermen walk down to the harbour, and the baker opens the shop on the corner of the
street. The children run to the school at the top of the hill, where the teacher is writing the
lesson on the board. In the afternoon the wind comes in from the west and the boats come back to
the harbour with their catch. The market is full of people: they are buying bread, fish, apples
and cheese, and they are talking about the weather and the news of the town. In the evening the
lights come on in the windows, the streets are quiet, and the river keeps running to the sea.
There is a small library near the station, and the librarian knows the name of every reader.
On Saturday the town holds a fair on the green; there is music, there are games for the children,
and the old men sit in the shade and talk about the years when the mill was still turning.
"""

PROMPT_TEXT = "In the morning the river is quiet, and the children walk to the market on the hill."


# ---------------------------------------------------------------------------------------------
# Tokenizer


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode map (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_tokenizer(n_vocab):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    byte_chars = bytes_to_unicode()
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    assert set(byte_chars.values()) == set(pre_tokenizers.ByteLevel.alphabet()), \
        "byte alphabet differs from tokenizers' ByteLevel alphabet"

    vocab = {byte_chars[b]: b for b in range(256)}
    n_model_vocab = n_vocab - len(SPECIAL_TOKENS)

    # Plain BPE training: most frequent adjacent pair first, ties broken by the pair's strings,
    # so the result depends on nothing but TRAIN_TEXT.
    words = collections.Counter(piece for piece, _ in pre.pre_tokenize_str(TRAIN_TEXT))
    words = {tuple(w): c for w, c in words.items()}
    merges = []
    while len(vocab) < n_model_vocab:
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            raise RuntimeError("training text too short for the requested vocabulary")
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = best[0] + best[1]
        if merged not in vocab:
            vocab[merged] = len(vocab)
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == n_model_vocab + i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size(with_added_tokens=True) == n_vocab
    for text in (TRAIN_TEXT, PROMPT_TEXT, "héllo wörld ✓ 日本"):
        assert tok.decode(tok.encode(text).ids) == text, text
    return tok, len(merges)


TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<|bos|>",
    "eos_token": "<|eos|>",
    "pad_token": None,
    "unk_token": None,
    "add_bos_token": False,
    "add_eos_token": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 256,
    "chat_template": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
}


# ---------------------------------------------------------------------------------------------
# Models

BOS_ID = N_VOCAB - len(SPECIAL_TOKENS)
EOS_ID = BOS_ID + 1

COMMON = dict(vocab_size=N_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
              hidden_act="silu", bos_token_id=BOS_ID, eos_token_id=EOS_ID,
              attention_dropout=0.0)

# name -> (transformers class name, GGUF architecture, config class, rope theta, rope scaling,
#          extra config fields, what the case is for)
CASES = {
    "llama3": ("LlamaForCausalLM", "llama", "LlamaConfig", 500000.0,
               {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
               dict(tie_word_embeddings=False, rms_norm_eps=1e-5),
               "GQA 4/2, llama3 RoPE scaling with original context 64 (head_dim 16: frequency 0 "
               "unscaled, 1 interpolated, 2..7 divided by 8), untied head"),
    "llama2": ("LlamaForCausalLM", "llama", "LlamaConfig", 10000.0, None,
               dict(num_key_value_heads=4, tie_word_embeddings=True, rms_norm_eps=1e-6),
               "MHA, plain RoPE, tied output head (no lm_head.weight in the file)"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2", "Qwen2Config", 1000000.0, None,
              dict(tie_word_embeddings=False, rms_norm_eps=1e-6, use_sliding_window=False),
              "GQA 4/2, Q/K/V biases (random, nonzero)"),
    "qwen3": ("Qwen3ForCausalLM", "qwen3", "Qwen3Config", 1000000.0, None,
              dict(head_dim=32, tie_word_embeddings=False, rms_norm_eps=1e-6,
                   use_sliding_window=False, attention_bias=False),
              "GQA 4/2, head_dim 32 != hidden/heads (q_proj 64->128), per-head Q/K RMSNorm "
              "with random weights"),
    "qwen3moe": ("Qwen3MoeForCausalLM", "qwen3moe", "Qwen3MoeConfig", 1000000.0, None,
                 dict(head_dim=32, tie_word_embeddings=False, rms_norm_eps=1e-6,
                      use_sliding_window=False, attention_bias=False, num_experts=8,
                      num_experts_per_tok=2, norm_topk_prob=True, moe_intermediate_size=48,
                      decoder_sparse_step=1, mlp_only_layers=[], output_router_logits=False),
                 "8 experts, top-2, renormalised weights, expert width 48, head_dim 32, Q/K norm"),
    "mixtral": ("MixtralForCausalLM", "llama", "MixtralConfig", 1000000.0, None,
                dict(intermediate_size=96, tie_word_embeddings=False, rms_norm_eps=1e-5,
                     num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
                     output_router_logits=False),
                "4 experts, top-2 (always renormalised), expert width 96, GQA 4/2"),
    "gptoss": ("GptOssForCausalLM", "gpt-oss", "GptOssConfig", 150000.0,
               {"rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
                "truncate": False, "original_max_position_embeddings": 64},
               dict(num_hidden_layers=3, head_dim=32, intermediate_size=32, num_local_experts=4,
                    num_experts_per_tok=2, sliding_window=8, tie_word_embeddings=False,
                    rms_norm_eps=1e-5, attention_bias=True, output_router_logits=False),
               "3 layers sliding (window 8) / full / sliding, learned per-head sinks, Q/K/V/O "
               "biases, YaRN (factor 4, original context 64, theta 1.5e5, not truncated: the "
               "ramp ends between frequencies 3 and 4 of 16), head_dim 32, GQA 4/2, 4 experts "
               "top-2 with router bias, fused interleaved gate_up with biases, clamped SwiGLU "
               "(gate_up weights scaled so that several percent of gate/up values pass the limit 7)"),
    # DeepSeek-V3/R1-like multi-head latent attention with q LoRA; 8 experts in 4 groups of 2, 2
    # groups used, top-2, sigmoid scores with a random e_score_correction_bias (a buffer:
    # randomize() draws it), renormalised and scaled by 2.5; one shared expert; first layer dense;
    # YaRN factor 4 on the rope dims (max_position_embeddings 256 = 4 x 64, as transformers takes
    # the factor from their ratio) with mscale = mscale_all_dim = 1 (softmax scale x 1.293).
    "deepseek3": ("DeepseekV3ForCausalLM", "deepseek2", "DeepseekV3Config", 10000.0,
                  {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                   "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
                  dict(num_hidden_layers=3, num_key_value_heads=4, q_lora_rank=48, kv_lora_rank=32,
                       qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32, intermediate_size=128,
                       moe_intermediate_size=32, n_routed_experts=8, num_experts_per_tok=2, n_group=4,
                       topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True,
                       first_k_dense_replace=1, rms_norm_eps=1e-6, tie_word_embeddings=False,
                       rope_interleave=True, attention_bias=False),
                  "MLA with q LoRA 48, kv_lora_rank 32, rope 16 / nope 32 / v 32, 4 heads; 3 layers, the "
                  "first dense; 8 experts top-2 in 4 groups (2 used), sigmoid with a random "
                  "e_score_correction_bias, norm_topk_prob, routed_scaling_factor 2.5, one shared expert; "
                  "YaRN factor 4 (original 64), mscale = mscale_all_dim = 1"),
    # DeepSeek-V2-Lite-like: no q LoRA, softmax greedy routing without renormalisation, two shared
    # experts, plain RoPE (transformers' DeepseekV2Attention has no YaRN softmax correction, the
    # original code and llama.cpp do: a YaRN V2 case would test that disagreement). The rope part
    # is 32 wide so that the latent row (32 + 32) is whole Q8_0/Q4_0 blocks.
    "deepseek2lite": ("DeepseekV2ForCausalLM", "deepseek2", "DeepseekV2Config", 10000.0, None,
                      dict(num_hidden_layers=3, num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=32,
                           qk_rope_head_dim=32, qk_nope_head_dim=32, v_head_dim=32, intermediate_size=128,
                           moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
                           n_group=1, topk_group=1, topk_method="greedy", n_shared_experts=2,
                           routed_scaling_factor=1.0, norm_topk_prob=False, first_k_dense_replace=1,
                           rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False),
                      "MLA without q LoRA, kv_lora_rank 32, rope 32 / nope 32 / v 32, 4 heads; 3 layers, "
                      "the first dense; 4 experts top-2, softmax greedy, no renormalisation, two shared "
                      "experts; plain RoPE"),
}


def make_config(transformers, config_class, rope_theta, rope_scaling, fields):
    cls = getattr(transformers, config_class)
    params = inspect.signature(cls.__init__).parameters
    if "rope_parameters" in params:  # transformers >= 5: theta lives inside rope_parameters
        rope = dict(rope_scaling or {"rope_type": "default"})
        rope["rope_theta"] = rope_theta
        return cls(rope_parameters=rope, **fields)
    return cls(rope_theta=rope_theta, rope_scaling=rope_scaling, **fields)


def set_eager(model):
    # transformers 5 picks grouped_mm for MoE experts by default; the reference loop is "eager".
    is_moe = any(hasattr(model.config, k) for k in ("num_experts", "num_local_experts", "n_routed_experts"))
    if is_moe and hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation("eager")


def randomize(model, generator):
    """Draws every parameter (see the module docstring for the scales)."""
    gpt_oss = getattr(model.config, "model_type", "") == "gpt_oss"
    with torch.no_grad():
        for name, p in model.named_parameters():
            def normal(std):
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * std)
            if name.endswith("embed_tokens.weight"):
                normal(0.25)
            elif name.endswith(".sinks"):
                normal(1.0)  # gpt-oss attention sinks: one logit per head, order of the scores
            elif name.endswith("_bias"):
                normal(0.2)  # gpt-oss fused expert biases [E, 2I], [E, H]
            elif gpt_oss and re.search(r"experts\.gate_up_proj$", name):
                # gpt-oss [E, H, 2I] (hub layout) or [E, 2I, H]: fan-in is the hidden size.
                # std 4/sqrt(H) puts several percent of gate/up values past the clamp limit 7.
                normal(4.0 / math.sqrt(model.config.hidden_size))
            elif gpt_oss and re.search(r"experts\.down_proj$", name):
                normal(1.0 / math.sqrt(model.config.intermediate_size))
            elif "norm" in name and p.dim() == 1:
                p.copy_(0.5 + torch.rand(p.shape, generator=generator, dtype=torch.float64))
            elif name.endswith(".bias"):
                normal(0.2)
            elif name == "lm_head.weight":
                normal(2.0 / math.sqrt(p.shape[-1]))
            elif p.dim() >= 2:
                # nn.Linear [out, in] and fused experts [E, out, in]: fan-in is the last dim.
                normal(1.0 / math.sqrt(p.shape[-1]))
            else:
                raise RuntimeError(f"no init rule for parameter {name} {tuple(p.shape)}")
        # DeepSeek-V3's score-correction bias is a buffer (zeros after init): drawn so that it
        # moves expert choices (sigmoid scores are in (0, 1)).
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn(b.shape, generator=generator, dtype=torch.float64) * 0.1)


def gptoss_hub_tensor(key, value, config, layout):
    """gpt-oss fused experts in the hub layout (openai/gpt-oss-* safetensors, which llama.cpp's
    converter reads): gate_up_proj [E, H, 2I] with gate and up interleaved on the last dim
    (gate = [..., ::2], up = [..., 1::2]), gate_up_proj_bias [E, 2I] interleaved the same way,
    down_proj [E, I, H], down_proj_bias [E, H]. `layout` says how this transformers version keeps
    them in memory: "as-is" (the hub layout, transformers 4.55+), "concat" ([E, 2I, H], gate rows
    first) or "interleaved" ([E, 2I, H], rows interleaved); the load-back check picks the one
    that reloads to the same logits."""
    hidden, n_ff = config.hidden_size, config.intermediate_size
    if layout == "as-is":
        return value

    def interleave(gate, up, dim):
        return torch.stack((gate, up), dim=dim + 1).flatten(dim, dim + 1)

    if key.endswith("gate_up_proj"):
        assert tuple(value.shape[1:]) == (2 * n_ff, hidden), tuple(value.shape)
        if layout == "concat":
            value = interleave(value[:, :n_ff], value[:, n_ff:], 1)
        return value.transpose(1, 2).contiguous()
    if key.endswith("gate_up_proj_bias"):
        return interleave(value[:, :n_ff], value[:, n_ff:], 1) if layout == "concat" else value
    if key.endswith("down_proj") and value.shape[1] == hidden:  # [E, H, I] -> [E, I, H]
        return value.transpose(1, 2).contiguous()
    return value


def hub_state_dict(model, case, arch_gguf, gate_first=True):
    """The model's F32 tensors under the names real hub checkpoints use.

    transformers 5 keeps MoE experts fused in memory (mlp.experts.gate_up_proj [E, 2I, H] =
    cat(gate, up) on dim 1, mlp.experts.down_proj [E, H, I]) and renames Mixtral's
    block_sparse_moe to mlp; checkpoints on the hub (and llama.cpp's converter) use one tensor
    per expert. Older transformers already has per-expert modules; those names pass through.
    """
    config = model.config
    hidden = config.hidden_size
    tied = bool(getattr(config, "tie_word_embeddings", False))
    mixtral = case == "mixtral"
    names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    out = {}
    for key, value in model.state_dict().items():
        value = value.detach().to(torch.float32)
        if tied and key == "lm_head.weight":
            continue
        if arch_gguf == "gpt-oss":  # fused experts stay fused on the hub
            out[key] = gptoss_hub_tensor(key, value, config, gate_first).contiguous()
            continue
        m = re.fullmatch(r"(model\.layers\.\d+)\.mlp\.experts\.(gate_up_proj|down_proj)", key)
        if m:
            prefix = m.group(1) + (".block_sparse_moe" if mixtral else ".mlp")
            n_expert = value.shape[0]
            if m.group(2) == "gate_up_proj":
                w = value if value.shape[2] == hidden else value.transpose(1, 2)  # [E, 2I, H]
                n_ff = w.shape[1] // 2
                first, second = w[:, :n_ff], w[:, n_ff:]
                gate, up = (first, second) if gate_first else (second, first)
                for e in range(n_expert):
                    out[f"{prefix}.experts.{e}.{names[0]}.weight"] = gate[e].contiguous()
                    out[f"{prefix}.experts.{e}.{names[1]}.weight"] = up[e].contiguous()
            else:
                w = value if value.shape[1] == hidden else value.transpose(1, 2)  # [E, H, I]
                for e in range(n_expert):
                    out[f"{prefix}.experts.{e}.{names[2]}.weight"] = w[e].contiguous()
            continue
        if value.dim() == 3:
            raise RuntimeError(f"unexpected 3-D tensor {key} {tuple(value.shape)}")
        if mixtral:
            key = key.replace(".mlp.gate.", ".block_sparse_moe.gate.")
        out[key] = value.contiguous()
    return out


def hub_config(saved):
    """config.json in the style of hub checkpoints: rope_theta and rope_scaling at the top level
    (transformers 5 writes them inside rope_parameters)."""
    cfg = dict(saved)
    rope = cfg.pop("rope_parameters", None)
    if isinstance(rope, dict) and "rope_theta" in rope:
        rope = dict(rope)
        cfg["rope_theta"] = rope.pop("rope_theta")
        if rope.get("rope_type", "default") == "default":
            cfg["rope_scaling"] = None
        else:
            cfg["rope_scaling"] = rope
    if "dtype" in cfg and "torch_dtype" not in cfg:
        cfg["torch_dtype"] = cfg["dtype"]
    # transformers 5 writes Qwen3-MoE's expert count as num_local_experts; hub checkpoints (and
    # llama.cpp's converter) say num_experts.
    if cfg.get("model_type") == "qwen3_moe" and "num_local_experts" in cfg:
        cfg["num_experts"] = cfg.pop("num_local_experts")
    # Mixtral's config gained head_dim: null; hub files have no such key.
    if "head_dim" in cfg and cfg["head_dim"] is None:
        del cfg["head_dim"]
    return cfg


def forward_logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0]


def greedy(model, prompt_ids, n):
    ids = list(prompt_ids)
    for _ in range(n):
        ids.append(int(forward_logits(model, ids)[-1].argmax()))
    return ids[len(prompt_ids):]


def max_rel_err(a, b):
    """max over rows of max|a-b| / max|b|."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float(((a - b).abs().amax(dim=1) / b.abs().amax(dim=1)).max())


def load_back(transformers, directory):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        directory, attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    set_eager(model)
    problems = {k: v for k, v in info.items() if v}
    return model.double().eval(), problems


def make_case(transformers, name, index, out_dir, tok, tok_info):
    class_name, arch_gguf, config_class, theta, scaling, extra, what = CASES[name]
    fields = dict(COMMON)
    fields.update(extra)
    config = make_config(transformers, config_class, theta, scaling, fields)

    generator = torch.Generator().manual_seed(SEED + index)
    torch.manual_seed(SEED + index)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    assert type(model).__name__ == class_name, type(model).__name__
    set_eager(model)
    model = model.to(torch.float32).eval()
    randomize(model, generator)
    if fields.get("tie_word_embeddings"):
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), \
            "head not tied"
    attn = getattr(model.config, "_attn_implementation", None)
    assert attn in (None, "eager"), attn

    ref = copy.deepcopy(model).double().eval()
    set_eager(ref)

    prompt_ids = [BOS_ID] + tok.encode(PROMPT_TEXT).ids[:N_PROMPT - 1]
    assert len(prompt_ids) == N_PROMPT
    generated = greedy(ref, prompt_ids, N_GENERATE)
    input_ids = prompt_ids + generated[:-1]
    logits = forward_logits(ref, input_ids)                      # [n_positions, n_vocab] f64
    n_pos = len(input_ids)
    assert tuple(logits.shape) == (n_pos, N_VOCAB), tuple(logits.shape)
    full_argmax = logits[N_PROMPT - 1:].argmax(dim=1).tolist()
    n_argmax_diff = sum(int(a != b) for a, b in zip(full_argmax, generated))

    top2 = logits.topk(2, dim=1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    f32_err = max_rel_err(forward_logits(model, input_ids), logits)

    # Files.
    case_dir = os.path.join(out_dir, name)
    if os.path.exists(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    from safetensors.torch import save_file

    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)  # safetensors is the default (and the only form in 5.x)
        with open(os.path.join(tmp, "config.json")) as f:
            saved_config = json.load(f)
        if os.path.exists(os.path.join(tmp, "generation_config.json")):
            shutil.copy(os.path.join(tmp, "generation_config.json"), case_dir)
        saved_keys = []
        for fn in sorted(os.listdir(tmp)):
            if fn.endswith(".safetensors"):
                from safetensors import safe_open
                with safe_open(os.path.join(tmp, fn), "pt") as f:
                    saved_keys += list(f.keys())

    tok.save(os.path.join(case_dir, "tokenizer.json"))
    with open(os.path.join(case_dir, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2)
        f.write("\n")

    try:
        hf_tok = transformers.AutoTokenizer.from_pretrained(case_dir)
        hf_ids = hf_tok.encode(PROMPT_TEXT, add_special_tokens=False)
        if hf_ids != tok.encode(PROMPT_TEXT).ids:
            notes.append("AutoTokenizer encodes the prompt differently from tokenizers")
    except Exception as e:  # noqa: BLE001 - a note, not a failure: the tests use ids
        notes.append(f"AutoTokenizer.from_pretrained failed: {e!r}")

    # Write hub-style tensors + config, load them back, demand the same logits. The variants
    # cover what this script cannot know in advance about a transformers version (the order of
    # gate/up inside fused experts; whether a hub-style config is still read the same way).
    def write(gate_first, classic):
        tensors = hub_state_dict(model, name, arch_gguf, gate_first)
        # Write-then-rename: a model loaded from the previous file may still map it.
        path = os.path.join(case_dir, "model.safetensors")
        save_file(tensors, path + ".tmp", metadata={"format": "pt"})
        os.replace(path + ".tmp", path)
        cfg = hub_config(saved_config) if classic else saved_config
        with open(os.path.join(case_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        return tensors

    scale = float(logits.abs().max())
    results = []
    # gpt-oss: the first element is the in-memory expert layout (gptoss_hub_tensor).
    layouts = ["as-is", "concat", "interleaved"] if arch_gguf == "gpt-oss" else [True, False]
    for gate_first, classic in [(g, c) for c in (True, False) for g in layouts]:
        write(gate_first, classic)
        try:
            back, problems = load_back(transformers, case_dir)
            diff = float((forward_logits(back, input_ids) - logits).abs().max())
        except Exception as e:  # noqa: BLE001 - reported and tried with the next variant
            problems, diff = {"exception": repr(e)}, math.inf
        back = None
        print(f"  [{name}] write/load check gate_first={gate_first} hub_config={classic}: "
              f"max|diff|={diff:.3g} loading problems={problems}", flush=True)
        results.append((gate_first, classic, diff, problems))
        if diff <= 1e-12 * scale and not problems:
            break
    good = [r for r in results if r[2] <= 1e-12 * scale]
    good.sort(key=lambda r: bool(r[3]))
    if not good:
        raise RuntimeError(f"{name}: no written form reloads to the reference logits")
    gate_first, classic, diff, problems = good[0]
    tensors = write(gate_first, classic)
    if not classic:
        notes.append("config.json is transformers' own (rope_parameters): the hub-style form "
                     "did not reload identically")
    if arch_gguf == "gpt-oss":
        notes.append(f"gpt-oss experts: this transformers version keeps them in memory as "
                     f"{gate_first!r} (gptoss_hub_tensor); written in the hub layout "
                     "(gate_up_proj [E, H, 2I] interleaved, down_proj [E, I, H])")
    if problems:
        notes.append(f"from_pretrained reported {problems} for the written files")
    notes.append(f"reload check: max|logits(from_pretrained(written files)) - reference| = "
                 f"{diff:.3g}")

    with open(os.path.join(case_dir, "logits.bin"), "wb") as f:
        f.write(struct.pack(f"<{n_pos * N_VOCAB}f", *logits.to(torch.float32).flatten().tolist()))

    n_params = sum(t.numel() for t in tensors.values())
    frac = sum(m > 1e-3 for m in margins) / len(margins)
    reference = {
        "case": name,
        "arch": class_name,
        "gguf_arch": arch_gguf,
        "what": what,
        "prompt_text": PROMPT_TEXT,
        "prompt_ids": prompt_ids,
        "generated_ids": generated,
        "input_ids": input_ids,
        "n_vocab": N_VOCAB,
        "n_positions": n_pos,
        "logits_file": "logits.bin",
        "dtype": "float32",
        "shape": [n_pos, N_VOCAB],
        "layout": ("row-major little-endian float32; row i = logits after input_ids[i] at "
                   "position i (predicts token i+1 of prompt_ids+generated_ids); input_ids = "
                   "prompt_ids + generated_ids[:-1]; rows >= len(prompt_ids)-1 have argmax = "
                   "the next generated id"),
        "top2_margin": margins,
        "fraction_margin_gt_1e-3": frac,
        "hf_float32_max_rel_err": f32_err,
        "n_params": n_params,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "seed": SEED + index,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tok_info["version"],
        "tensor_names_from_save_pretrained": saved_keys,
        "notes": [
            "Reference: the F32 weights upcast to float64 (model.double()), eval mode, "
            "attn_implementation=eager, experts eager, CPU, one thread. transformers itself "
            "computes RMSNorm, the attention softmax, the MoE router softmax and the RoPE "
            "angles/cos/sin in float32 even in a float64 model, so the reference is float64 "
            "except for those (relative error ~1e-7); hf_float32_max_rel_err is the same model "
            "run entirely in float32 against it, the expected noise floor of an F32 engine.",
            "Greedy continuation: argmax of a full-sequence float64 forward at each step, "
            "EOS not treated specially; logits.bin is one full forward over input_ids "
            f"(its argmax differs from the step-by-step greedy at {n_argmax_diff} positions).",
            "Init: linear N(0,1/fan_in), untied lm_head N(0,4/fan_in), embeddings N(0,0.0625), "
            "RMSNorm weights U(0.5,1.5), biases N(0,0.04), routers N(0,1/fan_in).",
            f"Tokenizer: byte-level BPE, ids 0..255 = bytes, {tok_info['n_merges']} merges "
            f"(ids 256..{BOS_ID - 1}), specials {SPECIAL_TOKENS} = ids {BOS_ID}..{N_VOCAB - 1}.",
            "model.safetensors is written by this script under hub tensor names (one tensor "
            "per expert; Mixtral block_sparse_moe.*; no lm_head.weight when tied); "
            "tensor_names_from_save_pretrained lists what this transformers version's own "
            "save_pretrained wrote, for comparison. config.json is save_pretrained's, rewritten "
            "hub-style (rope_theta/rope_scaling at the top level, Qwen3-MoE num_experts). The "
            "directory was loaded back with from_pretrained and reproduced the logits exactly.",
        ] + notes,
    }
    with open(os.path.join(case_dir, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")

    srt = sorted(margins)
    return {
        "case": name, "params": n_params, "min_margin": srt[0],
        "median_margin": srt[len(srt) // 2], "frac_gt_1e-3": frac, "f32_err": f32_err,
        "argmax_diff": n_argmax_diff, "generated": generated,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (one subfolder per case)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    args = parser.parse_args()

    import tokenizers
    import transformers

    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, tokenizers {tokenizers.__version__}", flush=True)

    tok, n_merges = build_tokenizer(N_VOCAB)
    tok_info = {"version": tokenizers.__version__, "n_merges": n_merges}
    os.makedirs(args.out, exist_ok=True)
    rows, failed = [], []
    for index, name in enumerate(CASES):
        if name not in args.cases.split(","):
            continue
        print(f"case {name}", flush=True)
        try:
            rows.append(make_case(transformers, name, index, args.out, tok, tok_info))
        except Exception:  # noqa: BLE001 - the other cases still run; exit status says it
            traceback.print_exc()
            failed.append(name)

    print()
    print(f"{'case':10} {'params':>8} {'min margin':>11} {'median':>9} {'>1e-3':>6} "
          f"{'hf f32 err':>10} {'argmax!=greedy':>14}")
    for r in rows:
        print(f"{r['case']:10} {r['params']:8d} {r['min_margin']:11.3g} "
              f"{r['median_margin']:9.3g} {r['frac_gt_1e-3']:6.3f} {r['f32_err']:10.2g} "
              f"{r['argmax_diff']:14d}")
    for r in rows:
        print(f"{r['case']} generated: {r['generated']}")
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"total size {total / 1e6:.2f} MB")
    if failed:
        print(f"FAILED: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
