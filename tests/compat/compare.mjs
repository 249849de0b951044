// Reads GGUF files written by `velocity synth` with velocity (`velocity inspect --json`) and with
// @huggingface/gguf, an independent reader, and compares what they see:
//   - version, metadata key count, tensor count (per shard and in total), data section offsets;
//   - every metadata key, in file order, with its GGUF type (and array element type) and its value
//     (full tokenizer arrays included; 64-bit integers exactly where JSON allows);
//   - every tensor's name, shard, shape, type id and type name, offset and absolute file offset;
//   - byte sizes: velocity's n_bytes per tensor against a size computed here from the block
//     table of gguf-py (GGML_QUANT_SIZES) and @huggingface/gguf's shape, and the data layout
//     (aligned offsets, no overlaps, the data ends where the file does);
//   - split models: split.no / split.count / split.tensors.count of every shard, the shard list
//     and total parameter count from ggufAllShards;
//   - velocity's totals (parameters, tensor bytes, bytes per decoded token) recomputed here, and
//     its name for general.file_type against @huggingface/gguf's GGMLFileQuantizationType.
//
//   node compare.mjs <velocity binary> <scratch dir>
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { gguf, ggufAllShards, GGMLFileQuantizationType, GGMLQuantizationType, GGUFValueType } from "@huggingface/gguf";

const [velocity, work] = process.argv.slice(2);
if (!velocity || !work) {
  console.error("usage: node compare.mjs <velocity binary> <scratch dir>");
  process.exit(2);
}

const ARCHS = ["llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", "gpt-oss"];
const MOE_MIX_ARCHS = new Set(["qwen3moe", "gpt-oss"]);
const MAX_SHOWN = 20; // mismatches printed per case

// ggml type name -> [elements per block, bytes per block], as in gguf-py's GGML_QUANT_SIZES.
const QUANT_SIZES = {
  F32: [1, 4], F16: [1, 2], BF16: [1, 2], F64: [1, 8], I8: [1, 1], I16: [1, 2], I32: [1, 4], I64: [1, 8],
  Q4_0: [32, 18], Q4_1: [32, 20], Q5_0: [32, 22], Q5_1: [32, 24], Q8_0: [32, 34], Q8_1: [32, 36],
  Q2_K: [256, 84], Q3_K: [256, 110], Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210], Q8_K: [256, 292],
  IQ2_XXS: [256, 66], IQ2_XS: [256, 74], IQ3_XXS: [256, 98], IQ1_S: [256, 50], IQ4_NL: [32, 18],
  IQ3_S: [256, 110], IQ2_S: [256, 82], IQ4_XS: [256, 136], IQ1_M: [256, 56], TQ1_0: [256, 54],
  TQ2_0: [256, 66], MXFP4: [32, 17],
};

class Mismatches {
  constructor() {
    this.list = [];
  }
  add(message) {
    this.list.push(message);
  }
  check(ok, message) {
    if (!ok) this.add(typeof message === "function" ? message() : message);
    return ok;
  }
  get count() {
    return this.list.length;
  }
}

const show = (v) =>
  typeof v === "bigint" ? `${v}n` : JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x))?.slice(0, 120);

function runVelocity(args) {
  return execFileSync(velocity, args, { encoding: "utf8", maxBuffer: 1 << 30, stdio: ["ignore", "pipe", "pipe"] });
}

// Paths written by `velocity synth` ("wrote <path>" lines).
function synth({ arch, type, splitMaxSize, headerOnly }, output) {
  const args = ["synth", "--arch", arch, "--preset", "tiny", "--type", type, "-o", output, "--seed", "3"];
  if (splitMaxSize) args.push("--split-max-size", splitMaxSize);
  if (headerOnly) args.push("--header-only");
  const stdout = runVelocity(args);
  const paths = stdout
    .split("\n")
    .filter((line) => line.startsWith("wrote "))
    .map((line) => path.resolve(line.slice("wrote ".length)));
  if (paths.length === 0) throw new Error(`velocity synth printed no "wrote <path>" line:\n${stdout}`);
  return paths;
}

// Integers: JSON numbers (velocity) against bigint or number (@huggingface/gguf). Above 2^53 a
// JSON number has already been rounded by JSON.parse, so compare after the same rounding.
function sameScalar(v, h) {
  if (typeof h === "bigint") {
    if (typeof v !== "number") return false;
    return Number.isSafeInteger(v) ? BigInt(v) === h : Number(h) === v;
  }
  if (typeof h === "number" && !Number.isFinite(h)) return v === null; // JSON has no NaN/inf
  return v === h;
}

function compareValue(v, h, where, mm) {
  if (Array.isArray(h)) {
    if (!mm.check(Array.isArray(v), () => `${where}: velocity ${show(v)}, @huggingface/gguf an array of ${h.length}`))
      return;
    if (!mm.check(v.length === h.length, () => `${where}: velocity ${v.length} items, @huggingface/gguf ${h.length}`))
      return;
    for (let i = 0; i < h.length; i++) {
      const before = mm.count;
      compareValue(v[i], h[i], `${where}[${i}]`, mm);
      if (mm.count - before > 0 && mm.count > MAX_SHOWN) return;
    }
    return;
  }
  mm.check(sameScalar(v, h), () => `${where}: velocity ${show(v)}, @huggingface/gguf ${show(h)}`);
}

function compareMetadata(vel, hf0, mm) {
  const typed = hf0.typedMetadata;
  const hfKeys = Object.keys(typed).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
  const velKeys = Object.entries(vel.metadata)
    .sort((a, b) => a[1].index - b[1].index)
    .map(([key]) => key);
  mm.check(velKeys.length === hfKeys.length, () => `metadata: velocity ${velKeys.length} keys, @huggingface/gguf ${hfKeys.length}`);
  mm.check(
    velKeys.join("\n") === hfKeys.join("\n"),
    () => `metadata key order differs: velocity [${velKeys.slice(0, 8)}…], @huggingface/gguf [${hfKeys.slice(0, 8)}…]`,
  );
  for (const key of hfKeys) {
    const v = vel.metadata[key];
    const h = typed[key];
    if (!mm.check(v !== undefined, () => `metadata ${key}: missing in velocity`)) continue;
    mm.check(v.type === GGUFValueType[h.type], () => `metadata ${key}: type velocity ${v.type}, @huggingface/gguf ${GGUFValueType[h.type]}`);
    if (h.type === GGUFValueType.ARRAY)
      mm.check(
        v.elem_type === GGUFValueType[h.subType],
        () => `metadata ${key}: element type velocity ${v.elem_type}, @huggingface/gguf ${GGUFValueType[h.subType]}`,
      );
    compareValue(v.value, h.value, `metadata ${key}`, mm);
  }
}

function tensorBytes(shape, typeName) {
  const size = QUANT_SIZES[typeName];
  if (!size) return undefined;
  const [blockSize, blockBytes] = size.map(BigInt);
  const n = shape.reduce((a, d) => a * d, 1n);
  if (shape.length === 0 || shape[0] % blockSize !== 0n) return undefined;
  return (n / blockSize) * blockBytes;
}

function compareTensors(vel, hf, headerOnly, mm) {
  for (const s of hf) for (const t of s.tensorInfos) t.n_bytes = tensorBytes(t.shape, GGMLQuantizationType[t.dtype]);
  const hfTensors = hf.flatMap((s, shard) => s.tensorInfos.map((t) => ({ ...t, shard })));
  mm.check(vel.tensors.length === hfTensors.length, () => `tensors: velocity ${vel.tensors.length}, @huggingface/gguf ${hfTensors.length}`);
  const n = Math.min(vel.tensors.length, hfTensors.length);
  for (let i = 0; i < n && mm.count <= MAX_SHOWN; i++) {
    const v = vel.tensors[i];
    const h = hfTensors[i];
    const where = `tensor ${i} (${h.name})`;
    mm.check(v.name === h.name, () => `${where}: name velocity ${show(v.name)}`);
    mm.check(v.shard === h.shard, () => `${where}: shard velocity ${v.shard}, @huggingface/gguf ${h.shard}`);
    mm.check(h.n_dims === h.shape.length && v.shape.length === h.shape.length &&
             v.shape.every((d, k) => BigInt(d) === h.shape[k]),
             () => `${where}: shape velocity ${show(v.shape)}, @huggingface/gguf ${show(h.shape)}`);
    mm.check(v.type_id === h.dtype, () => `${where}: type id velocity ${v.type_id}, @huggingface/gguf ${h.dtype}`);
    mm.check(v.type === GGMLQuantizationType[h.dtype], () => `${where}: type velocity ${v.type}, @huggingface/gguf ${GGMLQuantizationType[h.dtype]}`);
    mm.check(BigInt(v.offset) === h.offset, () => `${where}: offset velocity ${v.offset}, @huggingface/gguf ${h.offset}`);
    const dataOffset = hf[h.shard].tensorDataOffset;
    mm.check(BigInt(v.file_offset) === dataOffset + h.offset,
             () => `${where}: file offset velocity ${v.file_offset}, @huggingface/gguf ${dataOffset + h.offset}`);
    mm.check(h.n_bytes !== undefined && BigInt(v.n_bytes) === h.n_bytes,
             () => `${where}: n_bytes velocity ${v.n_bytes}, expected ${h.n_bytes}`);
  }

  // Layout of each shard's data section, from @huggingface/gguf's offsets and our own sizes.
  hf.forEach((s, shard) => {
    const alignment = BigInt(s.metadata["general.alignment"] ?? 32);
    mm.check(s.tensorDataOffset % alignment === 0n, () => `shard ${shard}: data section at ${s.tensorDataOffset}, not aligned to ${alignment}`);
    const tensors = hfTensors.filter((t) => t.shard === shard).sort((a, b) => (a.offset < b.offset ? -1 : 1));
    let end = 0n;
    for (const t of tensors) {
      mm.check(t.offset % alignment === 0n, () => `${t.name}: offset ${t.offset} not aligned to ${alignment}`);
      mm.check(t.offset >= end, () => `${t.name}: offset ${t.offset} overlaps the previous tensor (ends at ${end})`);
      end = t.offset + (t.n_bytes ?? 0n);
    }
    if (headerOnly) return;
    const fileSize = BigInt(fs.statSync(vel.shards[shard].path).size);
    const dataEnd = s.tensorDataOffset + end;
    const padded = s.tensorDataOffset + ((end + alignment - 1n) / alignment) * alignment;
    mm.check(dataEnd <= fileSize && fileSize <= padded,
             () => `shard ${shard}: tensor data ends at ${dataEnd} (padded ${padded}), file is ${fileSize} bytes`);
  });
}

// velocity's totals, recomputed from @huggingface/gguf's view (the rule is in src/tools/inspect.h).
function compareTotals(vel, hf, mm) {
  const meta = hf[0].metadata;
  const arch = meta["general.architecture"];
  const tensors = hf.flatMap((s) => s.tensorInfos);
  const names = new Set(tensors.map((t) => t.name));
  const nExpert = BigInt(meta[`${arch}.expert_count`] ?? 0);
  const nUsed = BigInt(meta[`${arch}.expert_used_count`] ?? nExpert);
  let params = 0n;
  let bytes = 0n;
  let perToken = 0n;
  for (const t of tensors) {
    const elements = t.shape.reduce((a, d) => a * d, 1n);
    params += elements;
    t.n_bytes ??= 0n;
    bytes += t.n_bytes;
    if (t.name === "token_embd.weight" && names.has("output.weight")) perToken += t.n_bytes / (elements / t.shape[0]);
    else if (nExpert > 0n && t.name.includes("_exps") && t.shape[t.shape.length - 1] === nExpert)
      perToken += (t.n_bytes / nExpert) * (nUsed < nExpert ? nUsed : nExpert);
    else perToken += t.n_bytes;
  }
  const s = vel.summary;
  mm.check(BigInt(s.n_params) === params, () => `summary n_params: velocity ${s.n_params}, here ${params}`);
  mm.check(BigInt(s.n_bytes) === bytes, () => `summary n_bytes: velocity ${s.n_bytes}, here ${bytes}`);
  mm.check(BigInt(s.bytes_per_token) === perToken, () => `summary bytes_per_token: velocity ${s.bytes_per_token}, here ${perToken}`);
  const fileType = meta["general.file_type"];
  if (fileType !== undefined)
    mm.check(s.file_type === GGMLFileQuantizationType[fileType],
             () => `general.file_type ${fileType}: velocity names it ${s.file_type}, @huggingface/gguf ${GGMLFileQuantizationType[fileType]}`);
}

async function compareCase(c, mm) {
  const name = `${c.arch}-${c.type}${c.splitMaxSize ? "-split" : ""}${c.headerOnly ? "-header" : ""}`.toLowerCase();
  const paths = synth(c, path.join(work, `${name}.gguf`));
  const vel = JSON.parse(runVelocity(["inspect", "--json", paths[0]]));
  // The text reports must work too (their content is checked by the C++ tests).
  runVelocity(["inspect", paths[0]]);
  runVelocity(["inspect", "--all", paths[0]]);

  const hf = [];
  for (const p of paths)
    hf.push(await gguf(p, { allowLocalFile: true, typedMetadata: true, computeParametersCount: !c.headerOnly }));
  const hf0 = hf[0];

  mm.check(vel.shards.length === paths.length, () => `shards: velocity ${vel.shards.length}, synth wrote ${paths.length}`);
  if (c.splitMaxSize) mm.check(paths.length > 1, () => `--split-max-size ${c.splitMaxSize} wrote ${paths.length} file`);
  mm.check(vel.file.version === hf0.metadata.version, () => `version: velocity ${vel.file.version}, @huggingface/gguf ${hf0.metadata.version}`);
  mm.check(vel.file.header_only === !!c.headerOnly, () => `header_only: velocity ${vel.file.header_only}`);
  mm.check(BigInt(vel.n_kv) === hf0.metadata.kv_count, () => `kv_count: velocity ${vel.n_kv}, @huggingface/gguf ${hf0.metadata.kv_count}`);
  const hfTensorCount = hf.reduce((a, s) => a + s.metadata.tensor_count, 0n);
  mm.check(BigInt(vel.n_tensors) === hfTensorCount, () => `tensor_count: velocity ${vel.n_tensors}, @huggingface/gguf ${hfTensorCount}`);
  hf.forEach((s, i) => {
    const v = vel.shards[i];
    if (!v) return;
    mm.check(path.resolve(v.path) === paths[i], () => `shard ${i}: velocity path ${v.path}, synth wrote ${paths[i]}`);
    mm.check(v.version === s.metadata.version, () => `shard ${i}: version velocity ${v.version}, @huggingface/gguf ${s.metadata.version}`);
    mm.check(BigInt(v.n_tensors) === s.metadata.tensor_count, () => `shard ${i}: tensor_count velocity ${v.n_tensors}, @huggingface/gguf ${s.metadata.tensor_count}`);
    mm.check(BigInt(v.data_offset) === s.tensorDataOffset, () => `shard ${i}: data offset velocity ${v.data_offset}, @huggingface/gguf ${s.tensorDataOffset}`);
    mm.check(v.file_size === fs.statSync(paths[i]).size, () => `shard ${i}: file_size velocity ${v.file_size}`);
    if (paths.length > 1) {
      mm.check(s.metadata["split.no"] === i, () => `shard ${i}: split.no is ${s.metadata["split.no"]}`);
      mm.check(s.metadata["split.count"] === paths.length, () => `shard ${i}: split.count is ${s.metadata["split.count"]}`);
      mm.check(s.metadata["split.tensors.count"] === vel.n_tensors, () => `shard ${i}: split.tensors.count is ${s.metadata["split.tensors.count"]}`);
    }
  });

  compareMetadata(vel, hf0, mm);
  compareTensors(vel, hf, !!c.headerOnly, mm);
  compareTotals(vel, hf, mm);

  if (!c.headerOnly) {
    const all = await ggufAllShards(paths[0], { allowLocalFile: true });
    mm.check(all.urls.map((u) => path.resolve(u)).join("\n") === paths.join("\n"), () => `ggufAllShards found ${show(all.urls)}`);
    mm.check(all.parameterCount === vel.summary.n_params,
             () => `parameters: velocity ${vel.summary.n_params}, ggufAllShards ${all.parameterCount}`);
  }
  return { vel, paths };
}

const cases = [];
for (const arch of ARCHS) {
  cases.push({ arch, type: "Q8_0" });
  cases.push({ arch, type: "Q4_K_M" });
  if (MOE_MIX_ARCHS.has(arch)) cases.push({ arch, type: "MXFP4_MOE" });
  cases.push({ arch, type: "Q8_0", split: true }); // size set from the unsplit Q8_0 file
}
cases.push({ arch: "llama", type: "BF16" });
cases.push({ arch: "qwen3moe", type: "Q4_K_M", headerOnly: true });

let passed = 0;
let failed = 0;
const dataBytes = new Map(); // arch -> tensor bytes of its Q8_0 file
for (const c of cases) {
  const label = `${c.arch} ${c.type}${c.split ? " split" : ""}${c.headerOnly ? " header-only" : ""}`;
  const mm = new Mismatches();
  let detail = "";
  try {
    if (c.split) {
      // About three shards; K (decimal kilobytes) also exercises the size suffix.
      const bytes = dataBytes.get(c.arch) ?? 3_000_000;
      c.splitMaxSize = `${Math.max(1, Math.floor(bytes / 3 / 1000))}K`;
    }
    const { vel, paths } = await compareCase(c, mm);
    if (c.type === "Q8_0" && !c.split) dataBytes.set(c.arch, vel.summary.n_bytes);
    detail = `${vel.n_kv} keys, ${vel.n_tensors} tensors, ${paths.length} file${paths.length > 1 ? "s" : ""}`;
  } catch (err) {
    mm.add(`error: ${err.stderr ? String(err.stderr).trim() : err.stack ?? err}`);
  }
  if (mm.count === 0) {
    passed++;
    console.log(`ok    ${label} (${detail})`);
  } else {
    failed++;
    console.log(`FAIL  ${label}: ${mm.count} mismatch${mm.count > 1 ? "es" : ""}`);
    for (const m of mm.list.slice(0, MAX_SHOWN)) console.log(`        ${m}`);
    if (mm.count > MAX_SHOWN) console.log(`        … and ${mm.count - MAX_SHOWN} more`);
  }
}
console.log(`compat (@huggingface/gguf): ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
