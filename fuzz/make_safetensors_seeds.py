#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_safetensors: small valid safetensors files (each < 2 KB) with
F32/F16/BF16/I64/U8/BOOL/F8 tensors, __metadata__, space padding, a scalar and zero-size tensors.

    python3 fuzz/make_safetensors_seeds.py     # writes fuzz/corpus/safetensors/*.safetensors

Standard library only (no safetensors or numpy package): the format is u64 LE header size N,
N bytes of JSON, then the data buffer.
"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F64": 8}


def safetensors(tensors, metadata=None, pad_to=8):
    """tensors: [(name, dtype, shape)], laid out back to back in order; data bytes are a pattern."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape in tensors:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((len(data) + i) % 251 for i in range(n))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % pad_to)
    return struct.pack("<Q", len(text)) + text + data


SEEDS = {
    "empty": safetensors([]),
    "metadata_only": safetensors([], {"format": "pt"}),
    "f32": safetensors([("w", "F32", [2, 3])]),
    "mixed": safetensors([("a", "F16", [4]), ("b", "BF16", [2, 2]), ("c", "I64", [1]), ("d", "U8", [3])],
                         {"format": "pt", "k": "v"}),
    "scalar_and_empty": safetensors([("s", "F32", []), ("z", "F32", [0, 4]), ("y", "BOOL", [2])]),
    "unpadded": safetensors([("x", "F8_E4M3", [5]), ("q", "F64", [1])], pad_to=1),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, blob in SEEDS.items():
        assert len(blob) < 2048
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
