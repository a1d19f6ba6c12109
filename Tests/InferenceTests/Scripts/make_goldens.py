"""Regenerates the golden files from llama.cpp (the reference implementation).

Not run by CI: llama.cpp is built by hand as a yardstick (see ../../../README.md, "Measured").
usage: make_goldens.py LLAMA_CPP_BIN_DIR MODEL.gguf
writes Goldens/gemma3_tokenizer.json and Goldens/gemma3_greedy.json
"""
import json
import os
import subprocess
import sys

bin_dir, model = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
goldens = os.path.join(here, "..", "Goldens")

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "我的信用卡丢了，怎么办？",
    "请帮我转人工客服",
    "Card number 4111 1111 1111 1111, CVV 123, amount 12,345.67",
    "6222021234567894",
    "Emoji: 💳🏦😀👍🏽 done",
    "spaces    and\ttabs\n\nnew lines   ",
    "   leading and trailing   ",
    "What is the annual fee of the platinum card? 白金卡年费是多少？",
    "<start_of_turn>user\nHi<end_of_turn>\n",
    "naïve café résumé Ünïcödé",
    "",
]

def tokenize(text, parse_special):
    args = [os.path.join(bin_dir, "llama-tokenize"), "-m", model, "--stdin", "--ids", "--log-disable", "--no-escape"]
    if not parse_special:  # llama-tokenize parses special tokens by default
        args.append("--no-parse-special")
    out = subprocess.run(args, input=text.encode(), capture_output=True, check=True).stdout.decode()
    line = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(line)

cases = []
for text in TEXTS:
    for special in (False, True):
        cases.append({"text": text, "parse_special": special, "ids": tokenize(text, special)})
with open(os.path.join(goldens, "gemma3_tokenizer.json"), "w") as f:
    json.dump({"reference": "llama.cpp llama-tokenize (add_bos from the model)", "cases": cases}, f, ensure_ascii=False, indent=1)

PROMPTS = [
    "The capital of France is Paris. The capital of Germany is",
    "To report a lost credit card, you should",
    "我的信用卡丢了，",
    "Q: What is 12 + 30?\nA:",
    "Customer question: What is the annual fee of the gold card?\nBank service answer:",
    "Customer question: How do I reset my online banking password?\nBank service answer:",
    "Customer question: 我想查询信用卡账单\nBank service answer:",
    "The bank's opening hours are",
    "An interest rate is",
    "Customer question: Can I increase my credit limit?\nBank service answer:",
    "The first president of the United States was",
    "Customer question: I want to talk to a human agent.\nBank service answer:",
]
greedy = []
for prompt in PROMPTS:
    out = subprocess.run([os.path.join(bin_dir, "llama-simple"), "-m", model, "-n", "24", prompt],
                         capture_output=True, check=True).stdout.decode()
    text = out.split("<bos>", 1)[1] if "<bos>" in out else out
    greedy.append({"prompt": prompt, "output": text[len(prompt):].rstrip("\n") if text.startswith(prompt) else text})
with open(os.path.join(goldens, "gemma3_greedy.json"), "w") as f:
    json.dump({"reference": "llama.cpp llama-simple, greedy, 24 new tokens", "cases": greedy}, f, ensure_ascii=False, indent=1)

# Byte-level BPE (gpt2 tokenizer) on the synthetic vocabulary of bpe_vocab.py.
BPE_TEXTS = TEXTS + ["It's 12345678 o'clock, isn't it?", "ＡＢＣ full-width and\r\nCRLF", "<|im_start|>user\nhello<|im_end|>"]
bpe = []
for pre in ("qwen2", "llama3"):
    vocab_path = f"/tmp/sluice-bpe-{pre}.gguf"
    subprocess.run([sys.executable, os.path.join(here, "bpe_vocab.py"), vocab_path, pre], check=True, capture_output=True)
    for text in BPE_TEXTS:
        for special in (False, True):
            args = [os.path.join(bin_dir, "llama-tokenize"), "-m", vocab_path, "--stdin", "--ids", "--log-disable", "--no-escape"]
            if not special:
                args.append("--no-parse-special")
            out = subprocess.run(args, input=text.encode(), capture_output=True, check=True).stdout.decode()
            ids = json.loads([l for l in out.splitlines() if l.startswith("[")][-1])
            bpe.append({"pre": pre, "text": text, "parse_special": special, "ids": ids})
with open(os.path.join(goldens, "bpe_tokenizer.json"), "w") as f:
    json.dump({"reference": "llama.cpp llama-tokenize on bpe_vocab.py's vocabulary", "cases": bpe}, f, ensure_ascii=False, indent=1)
