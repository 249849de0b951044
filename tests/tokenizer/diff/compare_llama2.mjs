// Differential test: velocity's SentencePiece tokenizer vs llama-tokenizer-js 1.2.2 (npm), an
// independent JavaScript implementation of the Llama 1/2 tokenizer with the vocabulary and merges
// of Llama 2's tokenizer.json embedded. We rebuild a tokenizer.json from what it embeds (model BPE,
// byte_fallback, Prepend ▁ + Replace " " -> ▁, BOS template; written to a temp dir, never
// committed), velocity imports it with hf_import, and both sides encode and decode the corpus.
//
// With ../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf present, also checks that the
// embedded vocabulary equals that real Llama 2 GGUF's (tokens, types, special ids, flags, merge
// order) and runs the corpus through velocity with the GGUF as well.
//
// What llama-tokenizer-js does not do, and so how the corpus is fed to it:
//   - special tokens in the text are not parsed (SentencePiece doesn't either): velocity gets
//     parse_special = false;
//   - "" encodes to [] without BOS (HF and velocity give [BOS]): the empty string is compared
//     without add_special;
//   - text is a JS string: invalid UTF-8 reaches it as TextDecoder's U+FFFD, as for HF.
//
//   node compare_llama2.mjs <velocity_tokenizer_tests> [--count N] [--seed S] [--only llama2]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generate } from "./corpus.mjs";
import { LlamaTokenizer } from "llama-tokenizer-js";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const binary = path.resolve(args[0]);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const count = Number(opt("--count", 10000));
const seed = Number(opt("--seed", 20240601));
if (opt("--only", "llama2") !== "llama2") process.exit(0);
const fixture = path.resolve(here, "../../../../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf");

const js = new LlamaTokenizer();
const SPACE = "\u2581";

// tokenizer.json from the embedded data: vocabById (id -> piece) and merges ("a b" -> 2*rank+1).
function tokenizerJson() {
  const vocab = {};
  js.vocabById.forEach((piece, id) => { vocab[piece] = id; });
  const merges = [...js.merges.entries()].sort((a, b) => a[1] - b[1]).map(([m]) => m);
  const special = ["<unk>", "<s>", "</s>"].map((content) => ({
    id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  return {
    version: "1.0",
    added_tokens: special,
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPACE },
      { type: "Replace", pattern: { String: " " }, content: SPACE }] },
    pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [], special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } } },
    decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: SPACE }, content: " " },
      { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  };
}

function velocity(env, filter) {
  const run = spawnSync(binary, [`--gtest_filter=${filter}`], {
    env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 1 << 26,
  });
  return run;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "velocity-tokdiff-llama2-"));
let failed = false;
const json = path.join(work, "llama2-tokenizer.json");
fs.writeFileSync(json, JSON.stringify(tokenizerJson()));
// llama-tokenizer-js hard-codes BOS = 1 and has no EOS; Llama 2's tokenizer_config.json names these.
const config = path.join(work, "llama2-tokenizer_config.json");
fs.writeFileSync(config, JSON.stringify({ bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" }));

if (fs.existsSync(fixture)) {
  const run = velocity({ VELOCITY_TOKENIZER_DIFF_VOCAB: json, VELOCITY_TOKENIZER_DIFF_CONFIG: config,
                         VELOCITY_TOKENIZER_DIFF_SAME_AS: fixture },
                       "TokenizerDiffMode.VocabMatchesGguf");
  const line = (run.stdout.match(/vocab-compare: .*/) ?? [""])[0];
  if (run.status !== 0 || !line) {
    console.error(run.stdout, run.stderr);
    console.error("tokenizer-diff: llama2: the embedded vocabulary differs from the GGUF fixture");
    failed = true;
  } else {
    console.log(`tokenizer-diff: llama2: ${line}`);
  }
} else {
  console.log(`tokenizer-diff: llama2: fixture ${fixture} absent: vocabulary not checked against it`);
}

const corpus = generate(count, seed, ["<unk>", "<s>", "</s>"]);
const input = path.join(work, "llama2.in.jsonl");
fs.writeFileSync(input, corpus.map((c) => JSON.stringify({
  hex: c.bytes.toString("hex"), add_special: c.text.length > 0, parse_special: false, skip_special: true,
})).join("\n") + "\n");
const want = corpus.map((c) => {
  const ids = js.encode(c.text, true, true);
  return { ids, decoded: js.decode(ids, true, true) };
});

const sides = [["tokenizer.json from llama-tokenizer-js", json]];
if (fs.existsSync(fixture)) sides.push(["GGUF fixture", fixture]);
for (const [label, vocab] of sides) {
  const output = path.join(work, "llama2.out.jsonl");
  const run = velocity({ VELOCITY_TOKENIZER_DIFF_VOCAB: vocab, VELOCITY_TOKENIZER_DIFF_INPUT: input,
                         VELOCITY_TOKENIZER_DIFF_OUTPUT: output }, "TokenizerDiffMode.EncodeJsonLines");
  if (run.status !== 0) {
    console.error(run.stdout, run.stderr);
    console.error(`tokenizer-diff: llama2 (${label}): velocity side failed (exit ${run.status})`);
    failed = true;
    continue;
  }
  const ours = fs.readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  let agreed = 0, decodeAgreed = 0, shown = 0;
  const byKind = {};
  for (let i = 0; i < corpus.length; i++) {
    const got = ours[i]?.ids ?? [];
    const kind = corpus[i].kind;
    byKind[kind] ??= [0, 0];
    byKind[kind][1]++;
    const w = want[i].ids;
    if (w.length === got.length && w.every((v, j) => v === got[j])) {
      agreed++;
      byKind[kind][0]++;
    } else if (shown++ < 10) {
      console.log(`MISMATCH llama2 (${label}) #${i} (${kind}): ${JSON.stringify(corpus[i].text).slice(0, 300)}`);
      console.log(`  llama-tokenizer-js: ${JSON.stringify(w).slice(0, 300)}`);
      console.log(`  velocity:           ${JSON.stringify(got).slice(0, 300)}`);
    }
    if (want[i].decoded === ours[i]?.decoded) decodeAgreed++;
    else if (shown++ < 10) {
      console.log(`DECODE MISMATCH llama2 (${label}) #${i}: js ${JSON.stringify(want[i].decoded).slice(0, 200)}`);
      console.log(`  velocity: ${JSON.stringify(ours[i]?.decoded).slice(0, 200)}`);
    }
  }
  const kinds = Object.entries(byKind).map(([k, [a, n]]) => `${k} ${a}/${n}`).join(", ");
  console.log(`tokenizer-diff: llama2 (${label}): encode ${agreed}/${corpus.length} agree (${kinds}); ` +
              `decode ${decodeAgreed}/${corpus.length} agree`);
  if (agreed !== corpus.length || decodeAgreed !== corpus.length) failed = true;
}
fs.rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
