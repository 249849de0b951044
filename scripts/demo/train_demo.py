#!/usr/bin/env python3
"""Trains velocity's bundled demo model (models/demo/) on one GPU in a few minutes.

Input (from scripts/demo/prepare_corpus.py): DATA/train.txt, DATA/heldout.txt, and the committed
held-out sample models/demo/heldout-sample.txt. Output under OUT:
  OUT/hf/                       a Hugging Face LlamaForCausalLM directory (float16 safetensors,
                                config.json, tokenizer.json, tokenizer_config.json with a chat
                                template) for `velocity convert`
  OUT/train_log.json            steps, tokens, losses, wall time, versions, sample generations
  OUT/perplexity_reference.json held-out perplexity computed as `velocity perplexity` does
  OUT/sample_tokens.json        the token ids of the held-out sample (to check velocity's tokenizer)

Steps:
  1. Byte-level BPE (GPT-2 pre-tokenizer regex, no prefix space) trained with Hugging Face
     `tokenizers` on the training text; one special token <|endoftext|>, which is BOS, EOS and
     the document separator. The post-processor prepends it (add_bos).
  2. Training stream: every training document, and a chat-formatted copy of each dictionary
     entry without its headword ("User: What is X?\\nAssistant: <definition>"), each preceded
     by <|endoftext|>. One document in 100 is kept apart as a validation set for choosing the
     checkpoint.
  3. LlamaForCausalLM, ~10M parameters, tied embeddings; AdamW, bf16 autocast, cosine LR,
     context 512; residual and embedding dropout through forward hooks (so the saved model is
     a plain Llama). The checkpoint with the lowest validation loss is kept.
  4. Saved as float16; every number below is computed from those saved weights in float32.

Perplexity (the definition `velocity perplexity` implements): the text is tokenized without
special tokens (no BOS) into ids t[0..N). Windows of at most n_ctx tokens start at 0, stride,
2*stride, ...; positions restart at 0 in each window. A window scores the tokens it predicts
that no earlier window scored, never its own first token (it has no context): with
stride == n_ctx that is positions 1..L-1 of each window; with stride < n_ctx the first window
scores 1..L-1 and later ones their last `stride` positions. NLL = -log softmax(logits)[target]
in float64; perplexity = exp(mean NLL); its standard error = ppl * SE(mean NLL), SE the sample
standard deviation of the per-token NLLs over sqrt(n).

Usage (on the device machine):
  python3 scripts/demo/train_demo.py --data build/demo --sample models/demo/heldout-sample.txt \\
      --out /tmp/demo
"""
import argparse
import json
import math
import os
import platform
import random
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

EOT = "<|endoftext|>"

# Plain "User:" / "Assistant:" turns; a system message is written as a paragraph before them.
# Only string concatenation, if/elif and a for loop: renderable by velocity's Jinja subset.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- 'User: ' + message['content'] + '\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'Assistant: ' + message['content'] + eos_token + '\\n' -}}"
    "{%- else -%}"
    "{{- message['content'] + '\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- 'Assistant:' -}}"
    "{%- endif -%}"
)

QUESTIONS = ["What is {}?", "Define {}.", "What does \"{}\" mean?", "What is the meaning of {}?"]
DICT_ENTRY = re.compile(r"^([A-Z][A-Z'\-]*(?: [A-Z][A-Z'\-]*)*), [a-z]")


def log(msg):
    print(msg, flush=True)


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in f.read().split("\n\n") if d.strip()]


def chat_docs(docs):
    """A question-and-answer copy of each dictionary entry, in the chat template's format."""
    out = []
    for doc in docs:
        m = DICT_ENTRY.match(doc)
        if not m:
            continue
        word = m.group(1).lower()
        question = QUESTIONS[len(out) % len(QUESTIONS)].format(word)
        answer = doc[m.end(1):].lstrip(", ")
        answer = re.sub(r"^(?:[a-z]+\.)+\s*", "", answer)  # "n. ", "v.t. ": the answer is the definition
        out.append(f"User: {question}\nAssistant: {answer}")
    return out


def train_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    eot = tok.token_to_id(EOT)
    tok.post_processor = processors.TemplateProcessing(single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B",
                                                       special_tokens=[(EOT, eot)])
    return tok


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def stream_of(tok, docs):
    eot = tok.token_to_id(EOT)
    out = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        out.append(eot)
        out.extend(enc.ids)
    return np.array(out, dtype=np.int64)


def add_dropout(model, p):
    """Dropout on the embeddings and on each attention / MLP output, through hooks, so that the
    saved model stays a plain LlamaForCausalLM."""
    def hook(module, inputs, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True),) + tuple(output[1:])
        return F.dropout(output, p, True)
    handles = [model.model.embed_tokens.register_forward_hook(hook)]
    for layer in model.model.layers:
        handles.append(layer.self_attn.register_forward_hook(hook))
        handles.append(layer.mlp.register_forward_hook(hook))
    return handles


@torch.no_grad()
def window_loss(model, stream, ctx, device, max_windows=None):
    """Mean next-token loss over non-overlapping windows of ctx+1 tokens (bf16 autocast)."""
    model.eval()
    n = (len(stream) - 1) // ctx
    if max_windows:
        n = min(n, max_windows)
    total, count = 0.0, 0
    for i in range(0, n, 64):
        rows = [stream[j * ctx:j * ctx + ctx + 1] for j in range(i, min(n, i + 64))]
        t = torch.tensor(np.stack(rows), device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=t[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += t[:, 1:].numel()
    model.train()
    return total / count


@torch.no_grad()
def perplexity(model, ids, n_ctx, stride, device):
    """velocity perplexity's definition (see the module docstring); model in float32 or float64."""
    if not 0 < stride <= n_ctx:
        raise ValueError("need 0 < stride <= n_ctx")
    model.eval()
    nlls, n_windows = [], 0
    n = len(ids)
    start, next_unscored = 0, 1
    while start + 1 < n and next_unscored < n:
        length = min(n_ctx, n - start)
        window = torch.tensor(ids[start:start + length], device=device)[None]
        logits = model(input_ids=window, use_cache=False).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        first = max(1, next_unscored - start)
        targets = window[0, first:length]
        nlls.append(-logp[first - 1:length - 1].gather(1, targets[:, None])[:, 0].cpu())
        next_unscored = start + length
        start += stride
        n_windows += 1
    nll = torch.cat(nlls).numpy()
    mean = float(nll.mean())
    se = float(nll.std(ddof=1) / math.sqrt(len(nll)))
    ppl = math.exp(mean)
    return {"n_ctx": n_ctx, "stride": stride, "n_windows": n_windows, "n_scored": int(len(nll)),
            "mean_nll": mean, "mean_nll_se": se, "perplexity": ppl, "perplexity_se": ppl * se}


def fake_q8_0(model):
    """A copy of the model whose 2-D weights went through GGUF Q8_0 (blocks of 32 along a row,
    scale = absmax / 127 stored as float16, round to nearest): what quantisation alone costs."""
    import copy
    q = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in q.named_parameters():
            if p.dim() != 2 or p.shape[1] % 32:
                continue
            blocks = p.data.float().reshape(-1, 32)
            d = (blocks.abs().amax(dim=1, keepdim=True) / 127.0).half().float()
            qs = torch.where(d > 0, torch.round(blocks / torch.where(d > 0, d, torch.ones_like(d))),
                             torch.zeros_like(blocks)).clamp(-127, 127)
            p.data.copy_((qs * d).reshape(p.shape).to(p.dtype))
    return q


@torch.no_grad()
def generate(model, tok, prompt, n_tokens, temperature, top_k, seed, device):
    """BOS + prompt, then n_tokens (or until <|endoftext|>); full recompute each step."""
    eot = tok.token_to_id(EOT)
    ids = [eot] + encode(tok, prompt)
    n_prompt = len(ids)
    g = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    for _ in range(n_tokens):
        logits = model(input_ids=torch.tensor(ids[-512:], device=device)[None], use_cache=False).logits[0, -1].float()
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            v, i = torch.topk(logits / temperature, top_k)
            nxt = int(i[torch.multinomial(torch.softmax(v, -1), 1, generator=g)])
        if nxt == eot:
            break
        ids.append(nxt)
    return tok.decode(ids[n_prompt:])


def load_saved(hf_dir, dtype, device):
    try:
        model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=dtype)
    except TypeError:  # transformers 4.x
        model = LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=dtype)
    return model.to(device).eval()


def unigram_cross_entropy(train_stream, eval_ids, n_vocab):
    counts = np.bincount(train_stream, minlength=n_vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.array(eval_ids)].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="build/demo")
    ap.add_argument("--sample", default="models/demo/heldout-sample.txt")
    ap.add_argument("--out", default="/tmp/demo")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=320)
    ap.add_argument("--layers", type=int, default=7)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--intermediate", type=int, default=864)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--max-train-seconds", type=float, default=330.0)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    t_start = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = "cuda"
    os.makedirs(os.path.join(args.out, "hf"), exist_ok=True)
    hf_dir = os.path.join(args.out, "hf")

    # --- data and tokenizer ----------------------------------------------------------------
    docs = read_docs(os.path.join(args.data, "train.txt"))
    with open(os.path.join(args.data, "heldout.txt"), encoding="utf-8") as f:
        heldout_text = f.read()
    with open(args.sample, encoding="utf-8") as f:
        sample_text = f.read()
    val_docs = [d for i, d in enumerate(docs) if i % 100 == 99]
    train_docs = [d for i, d in enumerate(docs) if i % 100 != 99]
    chats = chat_docs(train_docs)
    log(f"documents: {len(train_docs)} train, {len(val_docs)} validation, {len(chats)} chat copies")

    tok = train_tokenizer(train_docs + chats, args.vocab)
    n_vocab = tok.get_vocab_size()
    eot = tok.token_to_id(EOT)
    tok.save(os.path.join(hf_dir, "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT, "eos_token": EOT, "pad_token": EOT,
        "add_bos_token": True, "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": args.ctx,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=2)
    train_stream = stream_of(tok, train_docs + chats)
    val_stream = stream_of(tok, val_docs)
    heldout_ids = encode(tok, heldout_text)
    sample_ids = encode(tok, sample_text)
    log(f"tokenizer: {n_vocab} tokens; train {len(train_stream)} tokens, validation {len(val_stream)}, "
        f"held-out {len(heldout_ids)} ({len(heldout_text.encode()) / len(heldout_ids):.2f} bytes/token), "
        f"sample {len(sample_ids)}")

    # --- model -------------------------------------------------------------------------------
    config = LlamaConfig(
        vocab_size=n_vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=args.ctx, rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot,
        pad_token_id=eot, hidden_act="silu", attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM(config).to(device)
    model.tie_weights()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters ({n_params / 1e6:.2f} M)")
    add_dropout(model, args.dropout)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    data = torch.tensor(train_stream, device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    offsets_arange = torch.arange(args.ctx + 1, device=device)
    history, best = [], {"val_loss": float("inf"), "step": 0, "state": None}
    t_train = time.time()
    tokens_seen, step, train_loss_ema = 0, 0, None
    model.train()
    while step < args.steps:
        if time.time() - t_train > args.max_train_seconds:
            log(f"stopping at step {step}: time budget of {args.max_train_seconds} s spent")
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        starts = torch.randint(0, len(data) - args.ctx - 1, (args.batch,), device=device, generator=gen)
        rows = data[starts[:, None] + offsets_arange[None, :]]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=rows[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, n_vocab), rows[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += args.batch * args.ctx
        if step % 50 == 0 or step == 1:
            lv = loss.item()
            train_loss_ema = lv if train_loss_ema is None else 0.9 * train_loss_ema + 0.1 * lv
        if step % args.eval_every == 0 or step == args.steps:
            val = window_loss(model, val_stream, args.ctx, device)
            elapsed = time.time() - t_train
            history.append({"step": step, "tokens": tokens_seen, "train_loss": train_loss_ema,
                            "val_loss": val, "lr": lr_at(step - 1), "seconds": round(elapsed, 1)})
            log(f"step {step:5d}  tokens {tokens_seen / 1e6:7.1f} M  train {train_loss_ema:.4f}  "
                f"val {val:.4f}  lr {lr_at(step - 1):.2e}  {elapsed:6.1f} s  "
                f"{tokens_seen / elapsed / 1e6:.2f} M tok/s")
            if val < best["val_loss"]:
                best = {"val_loss": val, "step": step,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    train_seconds = time.time() - t_train
    log(f"trained {step} steps, {tokens_seen} tokens ({tokens_seen / len(train_stream):.1f} epochs) in "
        f"{train_seconds:.1f} s; best validation loss {best['val_loss']:.4f} at step {best['step']}")
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    final_train_loss = window_loss(model, train_stream, args.ctx, device, max_windows=256)

    # --- save as float16, reload in float32 ----------------------------------------------------
    model.to(torch.float16).save_pretrained(hf_dir)
    del model
    model = load_saved(hf_dir, torch.float32, device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    log("saved: " + ", ".join(sorted(os.listdir(hf_dir))))
    with open(os.path.join(hf_dir, "config.json")) as f:
        log("config.json: " + f.read().replace("\n", " "))

    # --- numbers --------------------------------------------------------------------------------
    heldout_loss = window_loss(model, np.array(heldout_ids), args.ctx, device)
    unigram = unigram_cross_entropy(train_stream, heldout_ids, n_vocab)
    log(f"final train loss {final_train_loss:.4f}; held-out loss {heldout_loss:.4f} "
        f"(ppl {math.exp(heldout_loss):.2f}); unigram baseline {unigram:.4f} (ppl {math.exp(unigram):.1f})")
    reference = {
        "definition": "text tokenized without special tokens (no BOS); windows of at most n_ctx tokens "
                      "starting every `stride` tokens, positions from 0; each window scores the tokens "
                      "no earlier window scored except its own first token; perplexity = exp(mean NLL), "
                      "NLL from log-softmax in float64; perplexity_se = perplexity * SE(mean NLL)",
        "weights": "the saved float16 weights, evaluated in float32 (TF32 off) with PyTorch "
                   f"{torch.__version__}, transformers {transformers.__version__}",
        "sample": {"file": "models/demo/heldout-sample.txt", "bytes": len(sample_text.encode()),
                   "n_tokens": len(sample_ids), "results": []},
        "heldout": {"file": "build/demo/heldout.txt", "bytes": len(heldout_text.encode()),
                    "n_tokens": len(heldout_ids), "results": []},
    }
    for n_ctx, stride in ((256, 256), (512, 512), (256, 128)):
        r = perplexity(model, sample_ids, n_ctx, stride, device)
        reference["sample"]["results"].append(r)
        log(f"sample   ctx {n_ctx} stride {stride}: ppl {r['perplexity']:.4f} +/- {r['perplexity_se']:.4f} "
            f"over {r['n_scored']} tokens")
    for n_ctx, stride in ((256, 256), (512, 512)):
        r = perplexity(model, heldout_ids, n_ctx, stride, device)
        reference["heldout"]["results"].append(r)
        log(f"held-out ctx {n_ctx} stride {stride}: ppl {r['perplexity']:.4f} +/- {r['perplexity_se']:.4f} "
            f"over {r['n_scored']} tokens")
    model64 = load_saved(hf_dir, torch.float64, device)
    r64 = perplexity(model64, sample_ids, 256, 256, device)
    reference["sample"]["float64_ctx256"] = r64["perplexity"]
    del model64
    rq = perplexity(fake_q8_0(model), sample_ids, 256, 256, device)
    reference["sample"]["simulated_q8_0_ctx256"] = rq["perplexity"]
    log(f"sample ctx 256: float64 ppl {r64['perplexity']:.5f}; weights through Q8_0 {rq['perplexity']:.5f}")

    samples = []
    prompts = [("In the beginning", 0.0), ("And Jesus said unto them,", 0.0), ("LAWYER, n.", 0.0),
               ("The LORD is my shepherd;", 0.8), ("Blessed are", 0.8), ("POLITICS, n.", 0.8),
               ("User: What is a saint?\nAssistant:", 0.0), ("User: Define love.\nAssistant:", 0.8)]
    for i, (prompt, temperature) in enumerate(prompts):
        text = generate(model, tok, prompt, 80, temperature, 40, args.seed + i, device)
        samples.append({"prompt": prompt, "temperature": temperature, "top_k": 40 if temperature else None,
                        "text": text})
        log(f"--- [{'greedy' if temperature == 0 else f'T={temperature}, top-k 40'}] {prompt!r}\n{prompt}{text}")

    train_log = {
        "model": {"architecture": "LlamaForCausalLM", "parameters": n_params, **{
            k: getattr(config, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                            "num_attention_heads", "num_key_value_heads", "head_dim",
                                            "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings")},
                  "rope_theta": 10000.0},
        "data": {"train_documents": len(train_docs), "chat_documents": len(chats),
                 "validation_documents": len(val_docs), "train_tokens": int(len(train_stream)),
                 "validation_tokens": int(len(val_stream)), "heldout_tokens": len(heldout_ids)},
        "training": {"steps": step, "planned_steps": args.steps, "batch": args.batch, "ctx": args.ctx,
                     "tokens_seen": tokens_seen, "epochs": tokens_seen / len(train_stream), "lr": args.lr,
                     "warmup": args.warmup, "schedule": "linear warm-up, cosine to 10%",
                     "optimizer": "AdamW(0.9, 0.95), weight decay on 2-D weights, grad clip 1.0",
                     "dropout": args.dropout, "precision": "bf16 autocast, float32 master weights",
                     "seed": args.seed, "best_step": best["step"], "best_val_loss": best["val_loss"],
                     "train_seconds": round(train_seconds, 1), "history": history},
        "results": {"final_train_loss": final_train_loss, "heldout_loss_ctx512": heldout_loss,
                    "heldout_ppl_ctx512": math.exp(heldout_loss), "unigram_heldout_loss": unigram,
                    "unigram_heldout_ppl": math.exp(unigram)},
        "samples": samples,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "gpu": torch.cuda.get_device_name(0)},
        "wall_seconds": round(time.time() - t_start, 1),
    }
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(train_log, f, indent=2)
    with open(os.path.join(args.out, "perplexity_reference.json"), "w") as f:
        json.dump(reference, f, indent=2)
    with open(os.path.join(args.out, "sample_tokens.json"), "w") as f:
        json.dump(sample_ids, f)
    log(f"done in {time.time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
