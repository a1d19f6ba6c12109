"""Writes two small GGUF files Sluice must refuse: one with architecture 'mamba', one with a
Q2_K tensor. usage: make_unsupported.py PREFIX  (prints the two paths)"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

prefix = sys.argv[1]

arch = prefix + "-arch.gguf"
w = GGUFWriter(arch, "mamba")
w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

qtype = prefix + "-type.gguf"
w = GGUFWriter(qtype, "llama")
raw = np.zeros((1, 84), dtype=np.uint8)  # one Q2_K block of 256 elements
w.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=GGMLQuantizationType.Q2_K)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

print(arch)
print(qtype)
