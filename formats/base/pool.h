/* pool.h — a persistent pthreads pool running parallel-for loops.
 * Layer: formats/base. libc + pthreads only.
 * Tasks of one run must write disjoint outputs; results then do not depend on the
 * thread count or on scheduling. */
#ifndef SMELT_POOL_H
#define SMELT_POOL_H

#include <stddef.h>

typedef struct smelt_pool smelt_pool;

/* fn(ctx, task, thread): task in [0, n_tasks), thread in [0, n_threads). */
typedef void (*smelt_pool_fn)(void *ctx, size_t task, int thread);

/* n_threads <= 0 means one per online CPU. Returns NULL on allocation/thread failure. */
smelt_pool *smelt_pool_new(int n_threads);
void smelt_pool_free(smelt_pool *p);
int smelt_pool_threads(const smelt_pool *p);
/* Run all tasks, the calling thread included; returns when every task is done.
 * p may be NULL: then the tasks run serially on the caller (thread index 0). */
void smelt_pool_run(smelt_pool *p, size_t n_tasks, smelt_pool_fn fn, void *ctx);
/* Number of online CPUs (>= 1). */
int smelt_cpu_count(void);

#endif
