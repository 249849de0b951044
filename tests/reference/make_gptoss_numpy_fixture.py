#!/usr/bin/env python3
"""Interim gpt-oss fixture: tests/fixtures/hf/gptoss/ from a float64 NumPy transcription of
transformers' GptOssForCausalLM (src/transformers/models/gpt_oss/modeling_gpt_oss.py and the YaRN
branch of modeling_rope_utils.py, read at transformers commit 00d4b3d2), because no machine with
torch/transformers could be had in the session that added gpt-oss (docs/NOTES.md, issue 13).

It writes the same files as make_hf_fixtures.py's "gptoss" case (same config, same tokenizer,
same prompt, the hub layout of the tensors), so the C++ test cannot tell them apart; but its
logits come from this transcription, not from transformers. Replace it by running
`make_hf_fixtures.py --cases gptoss` on the device machine (tests/reference/README.md); that
script's write/load-back check then also proves the tensor layout against transformers itself.

Line-by-line correspondences (HF name -> here):
  GptOssRMSNorm                      rms_norm: x / sqrt(mean(x^2) + eps) * w
  GptOssRotaryEmbedding + yarn       yarn_inv_freq (truncate False), cos/sin * attention_factor
  _apply_rotary_emb                  rotate: halves (first, second) -> (f c - s s, s c + f s)
  eager_attention_forward            attention: scores * head_dim^-0.5, causal (and sliding:
                                     kv > q - window) mask, sinks concatenated as one more
                                     column, max subtracted, softmax, the sink column dropped
  GptOssTopKRouter                   router: logits = x W^T + b, top-k, softmax over the k
  GptOssExperts (inference branch)   experts: gate_up = x @ W[e] + b[e], gate = [..., ::2],
                                     up = [..., 1::2], gate clamped above at 7, up to [-7, 7],
                                     (up + 1) * gate * sigmoid(1.702 gate) @ down[e] + b[e]
  GptOssDecoderLayer                 x += attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x))

Run: python3 tests/reference/make_gptoss_numpy_fixture.py (NumPy only; a few seconds).
"""

import json
import math
import os
import shutil
import struct

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf")
OUT = os.path.join(ROOT, "gptoss")
TOKENIZER_FROM = os.path.join(ROOT, "qwen3moe")  # every case shares the tokenizer and prompt

SEED = 20260107
N_VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 320, 64, 3, 4, 2, 32
N_FF, N_EXPERT, TOP_K, WINDOW, EPS = 32, 4, 2, 8, 1e-5
THETA, FACTOR, ORIG_CTX, BETA_FAST, BETA_SLOW = 150000.0, 4.0, 64, 32.0, 1.0
ALPHA, LIMIT = 1.702, 7.0
BOS_ID, EOS_ID = 316, 317
N_GENERATE = 64
LAYER_TYPES = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(LAYERS)]


def make_weights(rng):
    """Hub names and layouts; scales as make_hf_fixtures.py's randomize() gives the gptoss case."""
    w = {}

    def normal(name, shape, std):
        w[name] = rng.standard_normal(shape) * std

    normal("model.embed_tokens.weight", (N_VOCAB, HIDDEN), 0.25)
    q_dim, kv_dim = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for il in range(LAYERS):
        p = f"model.layers.{il}."
        w[p + "input_layernorm.weight"] = 0.5 + rng.random(HIDDEN)
        w[p + "post_attention_layernorm.weight"] = 0.5 + rng.random(HIDDEN)
        for proj, n_out, n_in in (("q_proj", q_dim, HIDDEN), ("k_proj", kv_dim, HIDDEN),
                                  ("v_proj", kv_dim, HIDDEN), ("o_proj", HIDDEN, q_dim)):
            normal(p + f"self_attn.{proj}.weight", (n_out, n_in), 1 / math.sqrt(n_in))
            normal(p + f"self_attn.{proj}.bias", (n_out,), 0.2)
        normal(p + "self_attn.sinks", (HEADS,), 1.0)
        normal(p + "mlp.router.weight", (N_EXPERT, HIDDEN), 1 / math.sqrt(HIDDEN))
        normal(p + "mlp.router.bias", (N_EXPERT,), 0.2)
        normal(p + "mlp.experts.gate_up_proj", (N_EXPERT, HIDDEN, 2 * N_FF), 4 / math.sqrt(HIDDEN))
        normal(p + "mlp.experts.gate_up_proj_bias", (N_EXPERT, 2 * N_FF), 0.2)
        normal(p + "mlp.experts.down_proj", (N_EXPERT, N_FF, HIDDEN), 1 / math.sqrt(N_FF))
        normal(p + "mlp.experts.down_proj_bias", (N_EXPERT, HIDDEN), 0.2)
    w["model.norm.weight"] = 0.5 + rng.random(HIDDEN)
    normal("lm_head.weight", (N_VOCAB, HIDDEN), 2 / math.sqrt(HIDDEN))
    # The file holds float32; the reference computes with exactly those values.
    return {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}


def yarn_inv_freq():
    dim = HEAD_DIM
    attention_factor = 0.1 * math.log(FACTOR) + 1.0

    def find_correction_dim(num_rotations):
        return (dim * math.log(ORIG_CTX / (num_rotations * 2 * math.pi))) / (2 * math.log(THETA))

    low = max(find_correction_dim(BETA_FAST), 0)        # truncate False: no floor/ceil
    high = min(find_correction_dim(BETA_SLOW), dim - 1)
    if low == high:
        high += 0.001
    pos_freqs = THETA ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (FACTOR * pos_freqs)
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    inv_freq_extrapolation_factor = 1 - ramp
    inv_freq = (inv_freq_interpolation * (1 - inv_freq_extrapolation_factor)
                + inv_freq_extrapolation * inv_freq_extrapolation_factor)
    return inv_freq, attention_factor


def rms_norm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w


def rotate(x, cos, sin):  # x [heads, T, D], cos/sin [T, D/2]
    first, second = x[..., :HEAD_DIM // 2], x[..., HEAD_DIM // 2:]
    return np.concatenate((first * cos - second * sin, second * cos + first * sin), axis=-1)


def forward(w, ids):
    T = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    inv_freq, attention_factor = yarn_inv_freq()
    freqs = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(freqs) * attention_factor, np.sin(freqs) * attention_factor
    q_idx, kv_idx = np.arange(T)[:, None], np.arange(T)[None, :]
    causal = kv_idx <= q_idx
    sliding = causal & (kv_idx > q_idx - WINDOW)
    group = HEADS // KV_HEADS
    for il in range(LAYERS):
        p = f"model.layers.{il}."
        h = rms_norm(x, w[p + "input_layernorm.weight"])

        def linear(name, v):
            return v @ w[p + f"self_attn.{name}.weight"].T + w[p + f"self_attn.{name}.bias"]

        q = linear("q_proj", h).reshape(T, HEADS, HEAD_DIM).transpose(1, 0, 2)
        k = linear("k_proj", h).reshape(T, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        v = linear("v_proj", h).reshape(T, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)  # repeat_kv
        scores = q @ k.transpose(0, 2, 1) * HEAD_DIM ** -0.5
        mask = sliding if LAYER_TYPES[il] == "sliding_attention" else causal
        scores = np.where(mask[None], scores, -np.inf)
        sinks = np.broadcast_to(w[p + "self_attn.sinks"][:, None, None], (HEADS, T, 1))
        combined = np.concatenate((scores, sinks), axis=-1)
        combined = combined - combined.max(axis=-1, keepdims=True)
        probs = np.exp(combined)
        probs /= probs.sum(axis=-1, keepdims=True)
        attn = (probs[..., :-1] @ v).transpose(1, 0, 2).reshape(T, HEADS * HEAD_DIM)
        x = x + linear("o_proj", attn)

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        logits = h @ w[p + "mlp.router.weight"].T + w[p + "mlp.router.bias"]
        out = np.zeros_like(x)
        for t in range(T):
            top = np.argsort(-logits[t], kind="stable")[:TOP_K]
            z = np.exp(logits[t, top] - logits[t, top].max())
            z /= z.sum()
            for e, weight in zip(top, z):
                gate_up = h[t] @ w[p + "mlp.experts.gate_up_proj"][e] + w[p + "mlp.experts.gate_up_proj_bias"][e]
                gate, up = gate_up[::2], gate_up[1::2]
                gate = np.minimum(gate, LIMIT)
                up = np.clip(up, -LIMIT, LIMIT)
                glu = gate / (1 + np.exp(-gate * ALPHA))
                y = ((up + 1) * glu) @ w[p + "mlp.experts.down_proj"][e] + w[p + "mlp.experts.down_proj_bias"][e]
                out[t] += weight * y
        x = x + out
    x = rms_norm(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T


def save_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    rng = np.random.default_rng(SEED)
    w = make_weights(rng)
    with open(os.path.join(TOKENIZER_FROM, "reference.json")) as f:
        prompt_ids = json.load(f)["prompt_ids"]
    ids = list(prompt_ids)
    for _ in range(N_GENERATE):
        ids.append(int(forward(w, ids)[-1].argmax()))
    generated = ids[len(prompt_ids):]
    input_ids = prompt_ids + generated[:-1]
    logits = forward(w, input_ids)
    top2 = np.sort(logits, axis=1)[:, -2:]
    margins = (top2[:, 1] - top2[:, 0]).tolist()

    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(TOKENIZER_FROM, name), OUT)
    save_safetensors(os.path.join(OUT, "model.safetensors"), w)
    config = {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "vocab_size": N_VOCAB,
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "intermediate_size": N_FF,
        "num_local_experts": N_EXPERT, "num_experts_per_tok": TOP_K, "sliding_window": WINDOW,
        "layer_types": LAYER_TYPES, "max_position_embeddings": 256, "rms_norm_eps": EPS,
        "rope_theta": THETA,
        "rope_scaling": {"rope_type": "yarn", "factor": FACTOR, "beta_fast": BETA_FAST, "beta_slow": BETA_SLOW,
                         "truncate": False, "original_max_position_embeddings": ORIG_CTX},
        "attention_bias": True, "attention_dropout": 0.0, "tie_word_embeddings": False, "hidden_act": "silu",
        "swiglu_limit": LIMIT, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "torch_dtype": "float32",
        "initializer_range": 0.02, "output_router_logits": False, "router_aux_loss_coef": 0.9, "use_cache": True,
    }
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(OUT, "logits.bin"), "wb") as f:
        f.write(logits.astype("<f4").tobytes())
    n_pos = len(input_ids)
    reference = {
        "case": "gptoss", "arch": "GptOssForCausalLM", "gguf_arch": "gpt-oss",
        "what": "3 layers sliding (window 8) / full / sliding, per-head sinks, Q/K/V/O biases, YaRN (factor 4, "
                "original context 64, theta 1.5e5, not truncated), head_dim 32, GQA 4/2, 4 experts top-2 with "
                "router bias, fused interleaved gate_up with biases, clamped SwiGLU",
        "prompt_ids": prompt_ids, "generated_ids": generated, "input_ids": input_ids, "n_vocab": N_VOCAB,
        "n_positions": n_pos, "logits_file": "logits.bin", "dtype": "float32", "shape": [n_pos, N_VOCAB],
        "top2_margin": margins, "fraction_margin_gt_1e-3": sum(m > 1e-3 for m in margins) / n_pos,
        "seed": SEED, "numpy_version": np.__version__,
        "notes": [
            "INTERIM: logits from tests/reference/make_gptoss_numpy_fixture.py, a float64 NumPy transcription "
            "of transformers' modeling_gpt_oss.py (commit 00d4b3d2), not from transformers itself: no machine "
            "with torch/transformers was available. Regenerate with make_hf_fixtures.py --cases gptoss.",
            "Weights drawn in float64, stored as float32, and the reference computes with the stored values.",
        ],
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    srt = sorted(margins)
    print(f"gptoss: min margin {srt[0]:.3g}, median {srt[len(srt) // 2]:.3g}, "
          f"> 1e-3: {sum(m > 1e-3 for m in margins)}/{n_pos}; generated {generated}")
    print(f"size {sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
