/* Helper threads for the training kernels (kernels.c). With threads > 1, a kernel call cuts its work into
 * tasks that write disjoint outputs (the examples of a convolution, the shards of a kernel gradient, the
 * slices of a quantization) and this pool runs them on the calling thread and threads - 1 helpers.
 *
 * Why not OpenMP: PyTorch carries its own OpenMP runtime, and the training process forks worker
 * processes (microai.train.workers), which a second runtime's threads do not survive; here a forked
 * child starts with no helpers (pthread_atfork).
 *
 * Tasks are handed out by one atomic ticket, (generation << 32) | next task: a helper claims task i of
 * generation g only while the ticket still says g, so a helper late for a batch of tasks cannot take one
 * of the next. Between batches a helper spins for SPIN_NS (a training step's kernel calls come tens to
 * hundreds of microseconds apart, and waking a sleeping thread costs tens: with no spinning, the 1D
 * training step with two threads took 5.6 ms against 3.6), then sleeps on a condition variable until
 * the next batch. */
#define _GNU_SOURCE
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

#define MAX_HELPERS 63
#define SPIN_NS 1000000L
/* Below this much work (floating-point operations), handing tasks to a helper costs more than it saves. */
#define MIN_PARALLEL_WORK 100000.0

static struct {
    int started;           /* helper threads running */
    atomic_int active;     /* helpers that take tasks: set_threads - 1 */
    _Atomic(task_fn) fn;
    _Atomic(void *) context;
    atomic_int count;
    _Atomic uint64_t ticket; /* generation << 32 | the next task to claim */
    atomic_int done;         /* tasks of this generation finished */
    atomic_int sleepers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_flag dispatching; /* a thread is handing out tasks (another one runs its own inline) */
    atomic_long shared;      /* run_tasks calls whose tasks were offered to the helpers */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .dispatching = ATOMIC_FLAG_INIT};

static inline uint32_t generation(uint64_t ticket) { return (uint32_t)(ticket >> 32); }

/* Run the tasks of generation gen still unclaimed */
static void take_tasks(uint32_t gen) {
    uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    while (generation(t) == gen && (int)(uint32_t)t < atomic_load_explicit(&pool.count, memory_order_relaxed)) {
        if (!atomic_compare_exchange_weak_explicit(&pool.ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* t now holds the ticket another thread left */
        atomic_load_explicit(&pool.fn, memory_order_relaxed)(atomic_load_explicit(&pool.context,
                                                                                  memory_order_relaxed),
                                                             (int)(uint32_t)t);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
        t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    }
}

static long elapsed_ns(const struct timespec *since) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

/* The generation after `seen`, once the ticket shows it */
static uint32_t next_generation(uint32_t seen) {
    struct timespec began;
    clock_gettime(CLOCK_MONOTONIC, &began);
    for (int k = 1;; k++) {
        const uint32_t gen = generation(atomic_load_explicit(&pool.ticket, memory_order_acquire));
        if (gen != seen) return gen;
        PAUSE();
        if (k % 64 == 0 && elapsed_ns(&began) > SPIN_NS) break;
    }
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.sleepers, 1);
    uint32_t gen;
    while ((gen = generation(atomic_load(&pool.ticket))) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.lock);
    return gen;
}

static void *helper(void *arg) {
    const int index = (int)(intptr_t)arg;
    uint32_t seen = generation(atomic_load(&pool.ticket));
    for (;;) {
        seen = next_generation(seen);
        if (index < atomic_load_explicit(&pool.active, memory_order_relaxed)) take_tasks(seen);
    }
    return NULL;
}

/* In a forked child only the forking thread exists: no helpers */
static void forget_helpers(void) {
    pool.started = 0;
    atomic_store(&pool.active, 0);
    atomic_store(&pool.sleepers, 0);
    atomic_flag_clear(&pool.dispatching);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
}

void set_threads(int threads) {
    static int registered;
    const int helpers = threads - 1 < 0 ? 0 : threads - 1 > MAX_HELPERS ? MAX_HELPERS : threads - 1;
    if (helpers > 0 && !registered) registered = !pthread_atfork(NULL, NULL, forget_helpers);
    pthread_t thread; /* never joined: the helpers live as long as the process */
    while (pool.started < helpers && registered &&
           !pthread_create(&thread, NULL, helper, (void *)(intptr_t)pool.started))
        pool.started++;
    atomic_store(&pool.active, helpers < pool.started ? helpers : pool.started);
}

int kernel_threads(void) { return atomic_load(&pool.active) + 1; }

long shared_runs(void) { return atomic_load(&pool.shared); }

void run_tasks(task_fn fn, void *context, int count, double work) {
    if (atomic_load_explicit(&pool.active, memory_order_relaxed) == 0 || count < 2 || work < MIN_PARALLEL_WORK ||
        atomic_flag_test_and_set_explicit(&pool.dispatching, memory_order_acquire)) {
        for (int i = 0; i < count; i++) fn(context, i);
        return;
    }
    atomic_fetch_add_explicit(&pool.shared, 1, memory_order_relaxed);
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.context, context, memory_order_relaxed);
    atomic_store_explicit(&pool.count, count, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    const uint32_t gen = generation(atomic_load(&pool.ticket)) + 1;
    atomic_store(&pool.ticket, (uint64_t)gen << 32); /* sequentially consistent: publishes the above, and is
                                                        ordered before the read of sleepers */
    if (atomic_load(&pool.sleepers)) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    take_tasks(gen);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < count) PAUSE();
    atomic_flag_clear_explicit(&pool.dispatching, memory_order_release);
}
