"""The obvious alternative to a Sluice worker, for side-by-side benchmarks (never in CI).

A minimal Kafka bridge in front of llama.cpp's llama-server: consume a request, POST its
prompt to /completion (cache_prompt on, greedy, the stop strings Sluice uses), produce the
answer to the reply topic, commit. Requests whose retrieval found nothing are answered at once
as escalations, as Sluice does, so both sides ask the model the same questions.

    python llama_server_bridge.py BROKERS REQUESTS REPLIES SERVER_URL PROMPTS_JSONL [PARALLEL]

PROMPTS_JSONL: the lines `sluice eval --prompts` writes (question, prompt, stop, needs_model).
"""
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, Producer, TopicPartition

brokers, requests, replies, server, prompts_path = sys.argv[1:6]
parallel = int(sys.argv[6]) if len(sys.argv) > 6 else 16
plans = {}
for line in open(prompts_path, encoding="utf-8"):
    plan = json.loads(line)
    plans[plan["question"]] = plan

consumer = Consumer({"bootstrap.servers": brokers, "group.id": "llama-bridge", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
consumer.subscribe([requests])
producer = Producer({"bootstrap.servers": brokers, "linger.ms": 0})


def complete(request):
    plan = plans.get(request["prompt"])
    if plan is None or not plan["needs_model"]:
        return {"request_id": request["request_id"], "status": "ok", "text": "", "escalate": True,
                "escalation_reason": "no_knowledge"}
    body = json.dumps({"prompt": plan["prompt"], "n_predict": request.get("max_tokens", 64), "stop": plan["stop"],
                       "cache_prompt": True, "temperature": 0, "top_k": 1}).encode()
    post = urllib.request.Request(server + "/completion", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=600) as response:
        answer = json.load(response)
    return {"request_id": request["request_id"], "status": "ok", "text": answer["content"].strip(), "escalate": False,
            "tokens": answer.get("tokens_predicted")}


# Kafka calls stay on this thread; the pool's threads only wait for llama-server.
with ThreadPoolExecutor(parallel) as pool:
    pending = []
    while True:
        message = consumer.poll(0.02)
        if message is not None and not message.error():
            pending.append((pool.submit(complete, json.loads(message.value())), message))
        finished = [(future, message) for future, message in pending if future.done()]
        if not finished:
            continue
        pending = [entry for entry in pending if not entry[0].done() or entry not in finished]
        for future, message in finished:
            producer.produce(replies, json.dumps(future.result(), ensure_ascii=False).encode(), key=message.key())
        producer.flush()
        # Commit after the replies are delivered (completion order: good enough for a benchmark).
        consumer.commit(offsets=[TopicPartition(m.topic(), m.partition(), m.offset() + 1) for _, m in finished], asynchronous=False)
