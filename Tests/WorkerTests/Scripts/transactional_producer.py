"""Posts requests in committed transactions, as a Spring service with a transaction-id-prefix
does: each transaction leaves a commit marker after its records, an offset no consumer sees.

usage: transactional_producer.py BROKERS TOPIC PREFIX TRANSACTIONS PER_TRANSACTION
prints one request id per line
"""
import json
import sys

from confluent_kafka import Producer

brokers, topic, prefix, transactions, per = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
producer = Producer({"bootstrap.servers": brokers, "transactional.id": f"{prefix}-tx", "enable.idempotence": True})
producer.init_transactions(30)
for t in range(transactions):
    producer.begin_transaction()
    for i in range(per):
        request_id = f"{prefix}-tx-{t}-{i}"
        body = {"request_id": request_id, "prompt": f"transactional question {t}.{i}", "max_tokens": 2}
        producer.produce(topic, key=f"tx-{i}".encode(), value=json.dumps(body).encode())
        print(request_id)
    producer.commit_transaction(30)
producer.flush(30)
