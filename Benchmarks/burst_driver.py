"""Sends a burst of requests at once and waits for every reply (side-by-side benchmarks).

    python burst_driver.py BROKERS REQUESTS REPLIES PROMPTS_JSONL PREFIX [MAX_TOKENS]

Produces one request per question of PROMPTS_JSONL (`sluice eval --prompts`), ids PREFIX-N,
then consumes the reply topic until each has its reply. Prints one JSON line: drain seconds
(first request produced to last reply), p50 and p95 of the per-request latency, the replies
that escalated, and the generated tokens when the replies report them.
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer

brokers, requests, replies, prompts_path, prefix = sys.argv[1:6]
max_tokens = int(sys.argv[6]) if len(sys.argv) > 6 else 64
questions = [json.loads(line)["question"] for line in open(prompts_path, encoding="utf-8")]

# From the topic's start: "latest" is resolved at the first fetch, after which a fast reply may
# already be there (the driver then waited forever). Replies to other ids (a warm-up) are skipped.
consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"driver-{uuid.uuid4()}", "auto.offset.reset": "earliest"})
consumer.subscribe([replies])
while not consumer.assignment():
    consumer.poll(0.1)
producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
sent = {}
start = time.monotonic()
for index, question in enumerate(questions):
    request_id = f"{prefix}-{index}"
    producer.produce(requests, json.dumps({"request_id": request_id, "prompt": question, "max_tokens": max_tokens},
                                          ensure_ascii=False).encode(), key=request_id.encode())
    sent[request_id] = time.monotonic()
producer.flush()
latency, escalated, tokens = {}, 0, 0
while len(latency) < len(sent):
    message = consumer.poll(1.0)
    if message is None or message.error():
        continue
    reply = json.loads(message.value())
    request_id = reply.get("request_id")
    if request_id in sent and request_id not in latency:
        latency[request_id] = time.monotonic() - sent[request_id]
        escalated += bool(reply.get("escalate"))
        tokens += int(reply.get("tokens") or reply.get("usage", {}).get("completion_tokens") or 0)
drain = time.monotonic() - start
values = sorted(latency.values())
pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
print(json.dumps({"requests": len(sent), "drain_s": round(drain, 2), "p50_s": round(pick(0.5), 2), "p95_s": round(pick(0.95), 2),
                  "escalated": escalated, "tokens": tokens}))
