#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_gguf: small valid GGUF files (each < 4 KB) covering v2 and v3,
every metadata value type, arrays of arrays, general.alignment, several tensor types, a
header-only file and a split shard.

    python3 fuzz/make_seeds.py            # writes fuzz/corpus/gguf/*.gguf

Standard library only; independent of velocity's writer so the seeds do not inherit its bugs.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf")

# GGUF value type ids
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
              U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id -> (block size, block bytes)
DTYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q8_0": (8, 32, 34), "Q4_K": (12, 256, 144),
          "Q6_K": (14, 256, 210), "I32": (26, 1, 4), "BF16": (30, 1, 2), "MXFP4": (39, 32, 17)}


def string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def body(vtype, value):
    """Value body (no type id). Arrays are given as (elem_type, [items])."""
    if vtype == STR:
        return string(value)
    if vtype == ARR:
        elem, items = value
        return struct.pack("<IQ", elem, len(items)) + b"".join(body(elem, x) for x in items)
    return struct.pack(SCALAR_FMT[vtype], value)


def gguf(kvs, tensors=(), version=3, alignment=32, data=True):
    """kvs: [(key, type, value)]; tensors: [(name, dtype name, shape)], laid out in order."""
    out = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += string(key) + struct.pack("<I", vtype) + body(vtype, value)
    offset, blobs = 0, []
    for name, dtype, shape in tensors:
        type_id, block, block_bytes = DTYPES[dtype]
        n = 1
        for d in shape:
            n *= d
        nbytes = n // block * block_bytes
        offset = (offset + alignment - 1) // alignment * alignment
        out += string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", type_id, offset)
        blobs.append((offset, bytes((i * 7 + len(name)) & 0xFF for i in range(nbytes))))
        offset += nbytes
    out += b"\0" * (-len(out) % alignment)
    if data:
        section = bytearray(offset)
        for off, blob in blobs:
            section[off:off + len(blob)] = blob
        out += bytes(section)
    return out


def main():
    seeds = {}
    seeds["v3_every_value_type.gguf"] = gguf([
        ("general.architecture", STR, "llama"), ("t.u8", U8, 200), ("t.i8", I8, -100), ("t.u16", U16, 60000),
        ("t.i16", I16, -30000), ("t.u32", U32, 4000000000), ("t.i32", I32, -2000000000), ("t.f32", F32, 0.25),
        ("t.bool", BOOL, 1), ("t.str", STR, "h\u00e9llo"), ("t.u64", U64, 2**64 - 1), ("t.i64", I64, -2**63),
        ("t.f64", F64, 1e300), ("a.u8", ARR, (U8, [1, 2, 3])), ("a.i64", ARR, (I64, [-1, 1])),
        ("a.f32", ARR, (F32, [0.5, -0.5])), ("a.bool", ARR, (BOOL, [0, 1])), ("a.str", ARR, (STR, ["a", "", "bc"])),
        ("a.empty", ARR, (U16, [])),
    ])
    seeds["v3_nested_arrays.gguf"] = gguf([
        ("n.ints", ARR, (ARR, [(I32, [1, 2]), (I32, []), (I32, [3])])),
        ("n.strs", ARR, (ARR, [(ARR, [(STR, ["a"]), (STR, [])]), (ARR, [(STR, ["b", "c"])])])),
        ("n.empty", ARR, (ARR, [])),
    ])
    seeds["v2_tensors.gguf"] = gguf([("general.architecture", STR, "llama"), ("general.name", STR, "v2")],
                                    [("f32", "F32", [4, 3]), ("f16", "F16", [8]), ("q4_0", "Q4_0", [32, 2])],
                                    version=2)
    seeds["v3_align64_tensors.gguf"] = gguf(
        [("general.alignment", U32, 64), ("general.architecture", STR, "test")],
        [("q8_0", "Q8_0", [32, 2]), ("q4_k", "Q4_K", [256]), ("bf16", "BF16", [2, 2, 2, 2]), ("i32", "I32", [3])],
        alignment=64)
    seeds["v3_align8_kquants.gguf"] = gguf(
        [("general.alignment", U32, 8)],
        [("q6_k", "Q6_K", [256, 1]), ("mxfp4", "MXFP4", [32, 1, 1]), ("f32", "F32", [1])], alignment=8)
    seeds["v3_tokenizer.gguf"] = gguf([
        ("general.architecture", STR, "llama"), ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, "default"), ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "a", "b", "ab"])),
        ("tokenizer.ggml.scores", ARR, (F32, [0.0, -1.0, -2.0, -3.0])),
        ("tokenizer.ggml.token_type", ARR, (I32, [3, 1, 1, 1])), ("tokenizer.ggml.merges", ARR, (STR, ["a b"])),
    ])
    seeds["v3_header_only.gguf"] = gguf([("velocity.header_only", BOOL, 1)],
                                        [("big", "Q4_K", [256, 64]), ("small", "F16", [16])], data=False)
    seeds["v3_split_shard.gguf"] = gguf([("split.no", U16, 0), ("split.count", U16, 1),
                                         ("split.tensors.count", I32, 1)], [("t", "F32", [2, 2])])
    seeds["v3_empty.gguf"] = gguf([])

    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(seeds.items()):
        assert len(data) < 4096, (name, len(data))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
