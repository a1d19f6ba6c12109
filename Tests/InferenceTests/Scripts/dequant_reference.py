"""Reference dequantization by the `gguf` package's numpy code, for Sluice's tests.

usage: dequant_reference.py TYPE BLOCKS SEED
prints JSON: {"bytes": base64 of random blocks, "values": [float, ...]} for TYPE in
F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K Q6_K. Scale fields hold random finite halves so every
block is a plausible one.
"""
import base64
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants

name, blocks, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
qtype = GGMLQuantizationType[name]
block_size, type_size = quants.GGML_QUANT_SIZES[qtype]

if name == "F32":
    raw = rng.standard_normal(blocks * block_size).astype(np.float32).tobytes()
elif name == "F16":
    raw = rng.standard_normal(blocks * block_size).astype(np.float16).tobytes()
elif name == "BF16":
    raw = (rng.standard_normal(blocks * block_size).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
else:
    data = bytearray(rng.integers(0, 256, size=blocks * type_size, dtype=np.uint8).tobytes())
    scale_offsets = {"Q8_0": [0], "Q4_0": [0], "Q5_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]
    for b in range(blocks):
        for off in scale_offsets:
            half = np.float16(rng.uniform(-0.05, 0.05)).tobytes()
            data[b * type_size + off: b * type_size + off + 2] = half
    raw = bytes(data)

values = quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype).astype(np.float32).reshape(-1)
print(json.dumps({"bytes": base64.b64encode(raw).decode(), "values": [float(v) for v in values]}))
