// A persistent thread pool for the forward pass. Decoding one token issues ~150 parallel
// loops of tens to hundreds of microseconds each; waking threads for every one (as a dispatch
// queue does) costs a noticeable share of the step. Here the workers spin briefly between
// loops (a few hundred microseconds) and only then sleep on a condition variable.
#include "Kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <immintrin.h>
#include <malloc.h>

#define SL_SPIN_ROUNDS 20000  // pause instructions (a few hundred µs) before a worker sleeps

static struct {
    pthread_mutex_t lock;          // guards sleeping workers and the condition
    pthread_cond_t wake;
    pthread_mutex_t submit;        // one loop at a time; a concurrent caller runs its loop alone
    int workers;                   // threads besides the caller
    _Atomic uint64_t generation;   // incremented for every loop
    _Atomic int64_t next;          // next index to hand out
    _Atomic int busy;              // workers still inside the current loop
    int64_t count;
    int participants;              // workers (besides the caller) that take part
    sl_parallel_body body;
    void *context;
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER };

static void run_items(void) {
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (i >= pool.count) break;
        pool.body(pool.context, i);
    }
}

static void *worker_main(void *arg) {
    const int id = (int)(intptr_t)arg;
    uint64_t seen = 0;
    for (;;) {
        uint64_t now = atomic_load_explicit(&pool.generation, memory_order_acquire);
        for (int spin = 0; now == seen && spin < SL_SPIN_ROUNDS; spin++) {
            _mm_pause();
            now = atomic_load_explicit(&pool.generation, memory_order_acquire);
        }
        if (now == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((now = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
                pthread_cond_wait(&pool.wake, &pool.lock);
            }
            pthread_mutex_unlock(&pool.lock);
        }
        seen = now;
        if (id < pool.participants) run_items();
        atomic_fetch_sub_explicit(&pool.busy, 1, memory_order_acq_rel);
    }
    return 0;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool_size_request = 1;

static void start_pool(void) {
    pool.workers = 0;
    for (int i = 0; i < pool_size_request - 1; i++) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)i) == 0) pool.workers++;
        pthread_attr_destroy(&attr);
    }
}

void sl_parallel_for(int threads, int64_t count, sl_parallel_body body, void *context) {
    if (threads <= 1 || count <= 1) {
        for (int64_t i = 0; i < count; i++) body(context, i);
        return;
    }
    pool_size_request = threads;  // read once, by the first parallel loop
    pthread_once(&pool_once, start_pool);
    if (pool.workers == 0 || pthread_mutex_trylock(&pool.submit) != 0) {
        for (int64_t i = 0; i < count; i++) body(context, i);
        return;
    }
    pool.body = body;
    pool.context = context;
    pool.count = count;
    pool.participants = threads - 1 < pool.workers ? threads - 1 : pool.workers;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.busy, pool.workers, memory_order_relaxed);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_items();
    while (atomic_load_explicit(&pool.busy, memory_order_acquire) > 0) _mm_pause();
    pthread_mutex_unlock(&pool.submit);
}

void sl_reuse_large_allocations(void) {
    // glibc maps every block above 128 KB–32 MB afresh and unmaps it on free, so each decoding
    // step's logits (vocabulary × batch floats) and each prefill's buffers paid for zeroed
    // pages again. Serve them from the heap and keep freed memory for the next step.
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}
