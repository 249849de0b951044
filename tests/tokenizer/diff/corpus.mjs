// Seeded generator of tokenizer test strings: mixed scripts, CJK, emoji and ZWJ sequences,
// combining marks, whitespace and newline runs, numbers, source code, contractions, special-token
// look-alikes, and invalid UTF-8. Each item: { bytes: Buffer (what velocity gets), text: string
// (what Hugging Face gets: the bytes decoded lossily, as TextDecoder does), kind }.

export function rng(seed) {
  // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cp = (c) => String.fromCodePoint(c);
const range = (a, b) => (r) => cp(a + Math.floor(r() * (b - a + 1)));
const pick = (r, list) => list[Math.floor(r() * list.length)];

const words = ["the", "The", "THE", "hello", "Hello", "world", "tokenizer", "don't", "DON'T", "I'm", "it's",
  "IT'S", "we've", "they're", "you'll", "he'd", "'s", "'t", "'re", "'ll", "ſ", "'ſ", "'K", "naïve", "café",
  "straße", "Ärger", "résumé", "Привет", "мир", "Ελληνικά", "שלום", "مرحبا", "नमस्ते", "สวัสดี", "こんにちは",
  "カタカナ", "你好", "世界", "中文分词", "한국어", "안녕하세요", "ကမ္ဘာ", "ሰላም", "Ǆemal", "ǅ", "ﬁne", "ＡＢＣ",
  "µ", "Ωmega", "Kelvin", "e\u0301", "a\u0323\u030a", "\u1100\u1161", "Z\u0351\u0361\u0489", "ऩ", "क़"];
const code = [
  "int main(int argc, char** argv) {\n    return 0;\n}\n",
  "def f(x):\n\treturn x ** 2  # square\n\n\n",
  "for (size_t i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
  "{\"key\": [1, 2.5, -3e10, null, true], \"s\": \"a\\\\nb\"}",
  "<div class=\"x\">&amp;&lt;/div>\n  <br/>",
  "SELECT * FROM t WHERE id IN (1,2,3) -- comment\r\n",
  "    if x:\n        pass\n    else:\n        raise ValueError('bad')\n",
  "a=>b; x!==y; p?.q ?? r; `${t}`; /re[gex]+/gi",
  "#include <vector>\ntemplate <class T> using V = std::vector<T>;",
];
const specialsCommon = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
  "<|start_header_id|>", "<|end_header_id|>", "<think>", "</think>", "<tool_call>", "<|start|>", "<|message|>",
  "<|channel|>", "<|return|>", "<|end|>", "<s>", "</s>", "<unk>", "<|fim_prefix|>"];
const lookalikes = ["<|im_start|", "<|im_start", "|im_start|>", "< |im_end| >", "<|IM_START|>", "<<|im_end|>>",
  "<|begin_of_text|><", "<think", "</think >", "<|end", "<|endoftext|", "<||>", "<|>", "<|eot_id|><|eot_id|>"];

const atoms = [
  range(0x61, 0x7a), range(0x41, 0x5a), range(0x30, 0x39), range(0x21, 0x2f), range(0x3a, 0x40),
  () => " ", () => " ", () => "  ", () => "\n", () => "\t", () => "\r\n", () => "\u00a0", () => "\u3000",
  () => "\u2028", () => "\u0085", () => "\u200b", () => "\u000b", () => "\u000c",
  range(0xc0, 0x24f), range(0x300, 0x36f), range(0x370, 0x3ff), range(0x400, 0x4ff), range(0x590, 0x5ff),
  range(0x600, 0x6ff), range(0x900, 0x97f), range(0xe00, 0xe7f), range(0x1e00, 0x1fff), range(0x2000, 0x206f),
  range(0x20a0, 0x214f), range(0x2190, 0x27bf), range(0x3040, 0x30ff), range(0x4e00, 0x9fa5), range(0xac00, 0xd7a3),
  range(0x1100, 0x11ff), range(0xff00, 0xffef), range(0x1f300, 0x1f5ff), range(0x1f600, 0x1f64f),
  range(0x1f900, 0x1f9ff), range(0x10400, 0x1044f), range(0x1d400, 0x1d7ff), range(0x20000, 0x2a6d6),
  () => "\u{1F468}\u200d\u{1F469}\u200d\u{1F467}\u200d\u{1F466}", () => "\u{1F44D}\u{1F3FD}",
  () => "\u{1F1E9}\u{1F1EA}", () => "\u2764\ufe0f", () => "\u{1F3F3}\ufe0f\u200d\u{1F308}", () => "\u{1F999}",
  () => "٠١٢٣", () => "²³¹", () => "Ⅻ", () => "①②", () => "１２３",
];

function number(r) {
  const n = 1 + Math.floor(r() * 14);
  let s = "";
  for (let i = 0; i < n; i++) s += String(Math.floor(r() * 10));
  const f = r();
  if (f < 0.2) return s + "." + s.slice(0, 3);
  if (f < 0.3) return Number(s).toLocaleString("en-US");
  if (f < 0.4) return "-" + s;
  return s;
}

function mixed(r, length, specials) {
  let s = "";
  while ([...s].length < length) {
    const k = r();
    if (k < 0.45) s += pick(r, atoms)(r);
    else if (k < 0.7) s += (r() < 0.6 ? " " : "") + pick(r, words);
    else if (k < 0.8) s += (r() < 0.5 ? " " : "") + number(r);
    else if (k < 0.85) s += pick(r, code);
    else if (k < 0.9) s += (r() < 0.5 ? pick(r, lookalikes) : pick(r, specialsCommon));
    else if (k < 0.95) s += pick(r, specials);
    else s += pick(r, [" ", "\n", "\t", " \n", "\n\n", "\r"]).repeat(1 + Math.floor(r() * 40));
  }
  return s;
}

function invalidBytes(r) {
  const parts = [];
  const n = 1 + Math.floor(r() * 12);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.4) parts.push(Buffer.from(pick(r, words) + (r() < 0.5 ? " " : ""), "utf8"));
    else if (k < 0.6) parts.push(Buffer.from([Math.floor(r() * 256)]));
    else if (k < 0.7) parts.push(Buffer.from([0xe2, 0x82]));             // truncated 3-byte
    else if (k < 0.8) parts.push(Buffer.from([0xf0, 0x9f, 0x98]));       // truncated emoji
    else if (k < 0.85) parts.push(Buffer.from([0xed, 0xa0, 0x80]));       // surrogate
    else if (k < 0.9) parts.push(Buffer.from([0xc0, 0xaf]));             // overlong
    else if (k < 0.95) parts.push(Buffer.from([0xf4, 0x90, 0x80, 0x80])); // > U+10FFFF
    else parts.push(Buffer.from([0x80, 0xbf, 0xfe, 0xff]));
  }
  return Buffer.concat(parts);
}

// n strings from `seed`; `specials` are the vocabulary's own added tokens (mixed in).
export function generate(n, seed, specials) {
  const r = rng(seed);
  const decoder = new TextDecoder("utf-8", { fatal: false });
  const out = [];
  const fixed = ["", " ", "  ", "\n", "\n\n\n", "\t\n", " \u0085 ", "a".repeat(5000), " ".repeat(3000) + "x",
    "\n".repeat(2000), "1".repeat(1000), "\u{1F600}".repeat(500), "\u4e2d".repeat(2000),
    "'s'S'ſ'K'k", "I'M YOU'RE WE'VE", "e\u0301\u0301\u0301", "\u0301start"];
  for (const t of fixed) out.push({ kind: "fixed", text: t, bytes: Buffer.from(t, "utf8") });
  while (out.length < n) {
    const k = r();
    if (k < 0.08) {
      const bytes = invalidBytes(r);
      out.push({ kind: "invalid-utf8", bytes, text: decoder.decode(bytes) });
      continue;
    }
    const long = r() < 0.03;
    const len = long ? 500 + Math.floor(r() * 3000) : 1 + Math.floor(r() * 120);
    const text = mixed(r, len, specials);
    out.push({ kind: long ? "long" : "mixed", text, bytes: Buffer.from(text, "utf8") });
  }
  return out;
}
