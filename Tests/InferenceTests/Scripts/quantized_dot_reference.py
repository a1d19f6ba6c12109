"""Reference matrix-vector products by the `gguf` package's dequantization and numpy, for
Sluice's quantized-kernel tests (an implementation independent of Sluice's own kernels).

usage: quantized_dot_reference.py TYPE K ROWS WEIGHTS.bin ACTIVATIONS.f32 [TYPE K ROWS WEIGHTS.bin ACTIVATIONS.f32 ...]
WEIGHTS.bin holds ROWS rows of K elements of GGML type TYPE (Q8_0, Q4_K, ...) as stored in
a GGUF file; ACTIVATIONS.f32 holds BATCH rows of K float32 little-endian.
prints JSON: [[...], ...] — for each group, BATCH x ROWS products, activation row by
activation row, computed in float64.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants

result = []
arguments = sys.argv[1:]
for index in range(0, len(arguments), 5):
    name, k, rows, weights_path, activations_path = arguments[index:index + 5]
    k, rows = int(k), int(rows)
    raw = np.fromfile(weights_path, dtype=np.uint8)
    weights = quants.dequantize(raw, GGMLQuantizationType[name]).astype(np.float64).reshape(rows, k)
    x = np.fromfile(activations_path, dtype="<f4").astype(np.float64).reshape(-1, k)
    result.append([float(v) for v in (x @ weights.T).reshape(-1)])
print(json.dumps(result))
