#!/usr/bin/env python3
"""Interim deepseek2 fixtures: tests/fixtures/hf/{deepseek3,deepseek2lite}/ from a float64 NumPy
transcription of transformers' DeepseekV3ForCausalLM (models/deepseek_v3/modeling_deepseek_v3.py)
and DeepseekV2ForCausalLM (models/deepseek_v2/modeling_deepseek_v2.py), with the YaRN branch of
modeling_rope_utils.py, because torch/transformers were not on the machine of the session that
added deepseek2 (docs/NOTES.md, "Issue 13: deepseek2 on the CPU").

It writes the files make_hf_fixtures.py's "deepseek3" and "deepseek2lite" cases write (same configs,
tokenizer, prompt, hub tensor names: one tensor per expert), so the C++ test cannot tell them
apart; but the logits come from this transcription, not from transformers. Replace them with
`make_hf_fixtures.py --cases deepseek3,deepseek2lite` on a machine with transformers.

Written from the HF modeling code, not from velocity's C++ (which computes MLA absorbed, with a
latent cache; this is the plain per-head form HF computes):
  DeepseekV3RMSNorm / V2RMSNorm   rms_norm: x / sqrt(mean(x^2) + eps) * w; q_a/kv_a layernorms use
                                  the class default eps 1e-6 (rms_norm_eps is 1e-6 here too)
  q                               q_b(q_a_layernorm(q_a(x))) or q_proj(x); per head [nope | rope]
  kv                              kv_a_proj_with_mqa(x) = [latent R | k_rope]; kv_b(kv_a_layernorm
                                  (latent)) per head [k_nope | v]; k_rope shared by every head
  RoPE                            V3: apply_rotary_pos_emb_interleave (pairs (2i, 2i+1) moved to
                                  halves, then rotate_half); V2: view_as_complex on pairs (2i, 2i+1).
                                  Both rotate pair i by position * inv_freq[i]; the order of the
                                  rotated dims differs but q and k share it, so q.k is the same.
  YaRN (V3 case)                  _compute_yarn_parameters: factor = max_position_embeddings /
                                  original_max_position_embeddings (4), truncate (floor/ceil) on,
                                  attention_factor = get_mscale(4, mscale) / get_mscale(4,
                                  mscale_all_dim) = 1; DeepseekV3Attention.scaling =
                                  qk_head_dim^-0.5 * yarn_get_mscale(4, mscale_all_dim)^2
  eager_attention_forward         causal softmax(q k^T * scaling) v
  DeepseekV3TopkRouter            sigmoid(logits); choice = scores + e_score_correction_bias; group
                                  score = sum of the top-2 choices of the group; topk_group groups;
                                  other groups' choices set to 0.0 (masked_fill, as HF does); top-k;
                                  weights = scores (not choices), / (sum + 1e-20), * routed_scaling
  DeepseekV2Moe (greedy)          softmax(logits), top-k, weights * routed_scaling_factor (no
                                  renormalisation in HF's V2)
  MoE                             sum of weighted SwiGLU experts + shared experts (width
                                  moe_intermediate_size * n_shared_experts) on the same input
  Decoder layer                   x += attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x));
                                  layers below first_k_dense_replace have the dense MLP

Run: python3 tests/reference/make_deepseek2_numpy_fixture.py (NumPy only; a few seconds).
"""

import json
import math
import os
import shutil
import struct

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf")
TOKENIZER_FROM = os.path.join(ROOT, "qwen3moe")  # every case shares the tokenizer and prompt
N_VOCAB, HIDDEN, HEADS, EPS = 320, 64, 4, 1e-6
BOS_ID, EOS_ID = 316, 317
N_GENERATE = 64

CASES = {
    # V3/R1-like: q LoRA, sigmoid routing with a score-correction bias, 4 groups of 2, 2 groups used,
    # first layer dense, YaRN with mscale = mscale_all_dim = 1 (the real V3's values).
    "deepseek3": dict(
        seed=20260108, arch="DeepseekV3ForCausalLM", model_type="deepseek_v3", layers=3, dense=1,
        q_lora=48, kv_lora=32, rope=16, nope=32, v=32, n_ff=128, n_ff_exp=32, experts=8, top_k=2,
        groups=4, groups_used=2, shared=1, scale=2.5, norm=True, scoring="sigmoid",
        theta=10000.0, yarn=dict(factor=4.0, orig=64, beta_fast=32.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0),
        max_pos=256),
    # V2-Lite-like: no q LoRA, softmax greedy routing, two shared experts, no rope scaling. The rope
    # part is 32 wide (V2-Lite: 64) so that the latent row R + rope is whole Q8_0/Q4_0 blocks.
    "deepseek2lite": dict(
        seed=20260109, arch="DeepseekV2ForCausalLM", model_type="deepseek_v2", layers=3, dense=1,
        q_lora=None, kv_lora=32, rope=32, nope=32, v=32, n_ff=128, n_ff_exp=32, experts=4, top_k=2,
        groups=1, groups_used=1, shared=2, scale=1.0, norm=False, scoring="softmax",
        theta=10000.0, yarn=None, max_pos=256),
}


def make_weights(rng, c):
    """Hub names and layouts; scales as make_hf_fixtures.py's randomize() gives every case."""
    w = {}

    def normal(name, shape, std):
        w[name] = rng.standard_normal(shape) * std

    def norm_weight(name, n):
        w[name] = 0.5 + rng.random(n)

    normal("model.embed_tokens.weight", (N_VOCAB, HIDDEN), 0.25)
    dq = c["nope"] + c["rope"]
    for il in range(c["layers"]):
        p = f"model.layers.{il}."
        norm_weight(p + "input_layernorm.weight", HIDDEN)
        norm_weight(p + "post_attention_layernorm.weight", HIDDEN)
        a = p + "self_attn."
        if c["q_lora"]:
            normal(a + "q_a_proj.weight", (c["q_lora"], HIDDEN), 1 / math.sqrt(HIDDEN))
            norm_weight(a + "q_a_layernorm.weight", c["q_lora"])
            normal(a + "q_b_proj.weight", (HEADS * dq, c["q_lora"]), 1 / math.sqrt(c["q_lora"]))
        else:
            normal(a + "q_proj.weight", (HEADS * dq, HIDDEN), 1 / math.sqrt(HIDDEN))
        normal(a + "kv_a_proj_with_mqa.weight", (c["kv_lora"] + c["rope"], HIDDEN), 1 / math.sqrt(HIDDEN))
        norm_weight(a + "kv_a_layernorm.weight", c["kv_lora"])
        normal(a + "kv_b_proj.weight", (HEADS * (c["nope"] + c["v"]), c["kv_lora"]), 1 / math.sqrt(c["kv_lora"]))
        normal(a + "o_proj.weight", (HIDDEN, HEADS * c["v"]), 1 / math.sqrt(HEADS * c["v"]))
        m = p + "mlp."
        if il < c["dense"]:
            for proj, n_out, n_in in (("gate_proj", c["n_ff"], HIDDEN), ("up_proj", c["n_ff"], HIDDEN),
                                      ("down_proj", HIDDEN, c["n_ff"])):
                normal(m + proj + ".weight", (n_out, n_in), 1 / math.sqrt(n_in))
            continue
        normal(m + "gate.weight", (c["experts"], HIDDEN), 1 / math.sqrt(HIDDEN))
        if c["scoring"] == "sigmoid":
            normal(m + "gate.e_score_correction_bias", (c["experts"],), 0.1)
        fe, fs = c["n_ff_exp"], c["n_ff_exp"] * c["shared"]
        for e in range(c["experts"]):
            for proj, n_out, n_in in (("gate_proj", fe, HIDDEN), ("up_proj", fe, HIDDEN), ("down_proj", HIDDEN, fe)):
                normal(m + f"experts.{e}.{proj}.weight", (n_out, n_in), 1 / math.sqrt(n_in))
        for proj, n_out, n_in in (("gate_proj", fs, HIDDEN), ("up_proj", fs, HIDDEN), ("down_proj", HIDDEN, fs)):
            normal(m + f"shared_experts.{proj}.weight", (n_out, n_in), 1 / math.sqrt(n_in))
    norm_weight("model.norm.weight", HIDDEN)
    normal("lm_head.weight", (N_VOCAB, HIDDEN), 2 / math.sqrt(HIDDEN))
    return {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}


def get_mscale(scale, mscale=1.0):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_tables(c, n_pos):
    """inv_freq over the rope dims (HF head_dim = qk_rope_head_dim) and the cos/sin magnitude."""
    dim, base = c["rope"], c["theta"]
    pos_freqs = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    inv_freq, attention_factor = 1.0 / pos_freqs, 1.0
    y = c["yarn"]
    if y:
        factor = c["max_pos"] / y["orig"]  # HF: the ratio, when original_max_position_embeddings is given
        attention_factor = get_mscale(factor, y["mscale"]) / get_mscale(factor, y["mscale_all_dim"])

        def correction_dim(rotations):
            return (dim * math.log(y["orig"] / (rotations * 2 * math.pi))) / (2 * math.log(base))

        low = max(math.floor(correction_dim(y["beta_fast"])), 0)  # truncate: on (HF's default)
        high = min(math.ceil(correction_dim(y["beta_slow"])), dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extrapolation_factor = 1 - ramp
        inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_factor) + (1.0 / pos_freqs) * extrapolation_factor
    angles = np.arange(n_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles) * attention_factor, np.sin(angles) * attention_factor


def rms_norm(x, w, eps=EPS):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_pairs(x, cos, sin):
    """Rotation of pairs (2i, 2i+1) by the angle of frequency i: x [..., T, rope], cos/sin [T, rope/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def silu(x):
    return x / (1 + np.exp(-x))


def mlp(w, prefix, x):
    return (silu(x @ w[prefix + "gate_proj.weight"].T) * (x @ w[prefix + "up_proj.weight"].T)) @ w[prefix + "down_proj.weight"].T


def route(c, w, p, h):
    """[T, k] expert ids and weights, as DeepseekV3TopkRouter / DeepseekV2Moe compute them."""
    logits = h @ w[p + "mlp.gate.weight"].T
    n_e, k = c["experts"], c["top_k"]
    ids, weights, masking_mattered = [], [], 0
    for t in range(len(h)):
        if c["scoring"] == "sigmoid":
            scores = 1 / (1 + np.exp(-logits[t]))
            choice = scores + w[p + "mlp.gate.e_score_correction_bias"]
            size = n_e // c["groups"]
            group_scores = np.sort(choice.reshape(c["groups"], size), axis=1)[:, -2:].sum(axis=1)
            groups = np.argsort(-group_scores, kind="stable")[:c["groups_used"]]
            allowed = np.zeros(n_e, dtype=bool)
            for g in groups:
                allowed[g * size:(g + 1) * size] = True
            masked = np.where(allowed, choice, 0.0)  # HF: masked_fill(~mask, 0.0)
            top = np.argsort(-masked, kind="stable")[:k]
            if set(top) != set(np.argsort(-np.where(allowed, choice, -np.inf), kind="stable")[:k]):
                masking_mattered += 1
            wt = scores[top]
            if c["norm"]:
                wt = wt / (wt.sum() + 1e-20)
        else:
            z = np.exp(logits[t] - logits[t].max())
            scores = z / z.sum()
            top = np.argsort(-scores, kind="stable")[:k]
            wt = scores[top]
        ids.append(top)
        weights.append(wt * c["scale"])
    return ids, weights, masking_mattered


def forward(c, w, ids, stats=None):
    T = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    cos, sin = rope_tables(c, T)
    nope, rope, v_dim, r = c["nope"], c["rope"], c["v"], c["kv_lora"]
    scaling = (nope + rope) ** -0.5
    if c["yarn"] and c["yarn"]["mscale_all_dim"] and c["model_type"] == "deepseek_v3":
        scaling *= get_mscale(c["yarn"]["factor"], c["yarn"]["mscale_all_dim"]) ** 2
    causal = np.arange(T)[None, :] <= np.arange(T)[:, None]
    for il in range(c["layers"]):
        p = f"model.layers.{il}."
        a = p + "self_attn."
        h = rms_norm(x, w[p + "input_layernorm.weight"])
        if c["q_lora"]:
            q = rms_norm(h @ w[a + "q_a_proj.weight"].T, w[a + "q_a_layernorm.weight"]) @ w[a + "q_b_proj.weight"].T
        else:
            q = h @ w[a + "q_proj.weight"].T
        q = q.reshape(T, HEADS, nope + rope).transpose(1, 0, 2)
        q_nope, q_rot = q[..., :nope], q[..., nope:]
        compressed = h @ w[a + "kv_a_proj_with_mqa.weight"].T
        latent, k_rot = compressed[:, :r], compressed[:, r:]
        kv = (rms_norm(latent, w[a + "kv_a_layernorm.weight"]) @ w[a + "kv_b_proj.weight"].T)
        kv = kv.reshape(T, HEADS, nope + v_dim).transpose(1, 0, 2)
        k_nope, value = kv[..., :nope], kv[..., nope:]
        q_rot = rotate_pairs(q_rot, cos, sin)
        k_rot = np.broadcast_to(rotate_pairs(k_rot, cos, sin)[None], (HEADS, T, rope))
        query = np.concatenate((q_nope, q_rot), axis=-1)
        key = np.concatenate((k_nope, k_rot), axis=-1)
        scores = query @ key.transpose(0, 2, 1) * scaling
        scores = np.where(causal[None], scores, -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        attn = (probs @ value).transpose(1, 0, 2).reshape(T, HEADS * v_dim)
        x = x + attn @ w[a + "o_proj.weight"].T

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        if il < c["dense"]:
            x = x + mlp(w, p + "mlp.", h)
            continue
        top, weights, mattered = route(c, w, p, h)
        if stats is not None:
            stats["masking_mattered"] = stats.get("masking_mattered", 0) + mattered
        out = np.zeros_like(x)
        for t in range(T):
            for e, weight in zip(top[t], weights[t]):
                out[t] += weight * mlp(w, p + f"mlp.experts.{e}.", h[t:t + 1])[0]
        x = x + out + mlp(w, p + "mlp.shared_experts.", h)
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


def hub_config(c):
    """config.json as DeepSeek's hub checkpoints write it (rope_theta / rope_scaling at the top level)."""
    config = {
        "architectures": [c["arch"]], "model_type": c["model_type"], "vocab_size": N_VOCAB, "hidden_size": HIDDEN,
        "intermediate_size": c["n_ff"], "moe_intermediate_size": c["n_ff_exp"], "num_hidden_layers": c["layers"],
        "num_attention_heads": HEADS, "num_key_value_heads": HEADS, "n_shared_experts": c["shared"],
        "n_routed_experts": c["experts"], "routed_scaling_factor": c["scale"], "kv_lora_rank": c["kv_lora"],
        "q_lora_rank": c["q_lora"], "qk_rope_head_dim": c["rope"], "v_head_dim": c["v"], "qk_nope_head_dim": c["nope"],
        "n_group": c["groups"], "topk_group": c["groups_used"], "num_experts_per_tok": c["top_k"],
        "first_k_dense_replace": c["dense"], "norm_topk_prob": c["norm"], "scoring_func": c["scoring"],
        "topk_method": "noaux_tc" if c["scoring"] == "sigmoid" else "greedy", "hidden_act": "silu",
        "max_position_embeddings": c["max_pos"], "rms_norm_eps": EPS, "rope_theta": c["theta"],
        "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
        "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "torch_dtype": "float32", "initializer_range": 0.02,
        "use_cache": True,
    }
    if c["model_type"] == "deepseek_v3":
        config["rope_interleave"] = True
    y = c["yarn"]
    if y:
        config["rope_scaling"] = {"type": "yarn", "rope_type": "yarn", "factor": y["factor"],
                                  "original_max_position_embeddings": y["orig"], "beta_fast": y["beta_fast"],
                                  "beta_slow": y["beta_slow"], "mscale": y["mscale"],
                                  "mscale_all_dim": y["mscale_all_dim"]}
    return config


def make_case(name, c):
    out_dir = os.path.join(ROOT, name)
    c = dict(c, model_type=CASES[name]["model_type"])
    rng = np.random.default_rng(c["seed"])
    w = make_weights(rng, c)
    with open(os.path.join(TOKENIZER_FROM, "reference.json")) as f:
        prompt_ids = json.load(f)["prompt_ids"]
    ids = list(prompt_ids)
    for _ in range(N_GENERATE):
        ids.append(int(forward(c, w, ids)[-1].argmax()))
    generated = ids[len(prompt_ids):]
    input_ids = prompt_ids + generated[:-1]
    stats = {}
    logits = forward(c, w, input_ids, stats)
    top2 = np.sort(logits, axis=1)[:, -2:]
    margins = (top2[:, 1] - top2[:, 0]).tolist()

    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(TOKENIZER_FROM, f), out_dir)
    save_safetensors(os.path.join(out_dir, "model.safetensors"), w)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hub_config(c), f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "logits.bin"), "wb") as f:
        f.write(logits.astype("<f4").tobytes())
    n_pos = len(input_ids)
    what = {
        "deepseek3": "MLA with q LoRA (48), kv_lora_rank 32, rope 16 / nope 32 / v 32, 4 heads; 3 layers, the first "
                     "dense; 8 experts top-2 in 4 groups (2 used), sigmoid scores with a random "
                     "e_score_correction_bias, norm_topk_prob, routed_scaling_factor 2.5, one shared expert; YaRN "
                     "factor 4 (original 64), mscale = mscale_all_dim = 1",
        "deepseek2lite": "MLA without q LoRA, kv_lora_rank 32, rope 32 / nope 32 / v 32, 4 heads; 3 layers, the first "
                         "dense; 4 experts top-2, softmax greedy, no renormalisation, two shared experts; plain RoPE",
    }[name]
    reference = {
        "case": name, "arch": c["arch"], "gguf_arch": "deepseek2", "what": what,
        "prompt_ids": prompt_ids, "generated_ids": generated, "input_ids": input_ids, "n_vocab": N_VOCAB,
        "n_positions": n_pos, "logits_file": "logits.bin", "dtype": "float32", "shape": [n_pos, N_VOCAB],
        "top2_margin": margins, "fraction_margin_gt_1e-3": sum(m > 1e-3 for m in margins) / n_pos,
        "seed": c["seed"], "numpy_version": np.__version__,
        "notes": [
            "INTERIM: logits from tests/reference/make_deepseek2_numpy_fixture.py, a float64 NumPy transcription of "
            "transformers' modeling_deepseek_v3.py / modeling_deepseek_v2.py (the per-head, non-absorbed form), not "
            "from transformers itself: no machine with torch/transformers was available. Regenerate with "
            f"make_hf_fixtures.py --cases {name}.",
            "Weights drawn in float64, stored as float32, and the reference computes with the stored values.",
            f"Tokens where HF's 0.0 group masking picks other experts than -inf masking would: "
            f"{stats.get('masking_mattered', 0)} (llama.cpp and velocity mask with -inf).",
        ],
    }
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")
    srt = sorted(margins)
    print(f"{name}: min margin {srt[0]:.3g}, median {srt[len(srt) // 2]:.3g}, "
          f"> 1e-3: {sum(m > 1e-3 for m in margins)}/{n_pos}; masking mattered {stats.get('masking_mattered', 0)}; "
          f"generated {generated}")
    print(f"size {sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir)) / 1e6:.2f} MB")


def main():
    for name, c in CASES.items():
        make_case(name, c)


if __name__ == "__main__":
    main()
