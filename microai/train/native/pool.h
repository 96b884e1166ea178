/* Helper threads for the training kernels (pool.c). */
#ifndef MICROAI_POOL_H
#define MICROAI_POOL_H

typedef void (*task_fn)(void *context, int task);

/* fn(context, i) for every i < count, spread over the calling thread and the helpers when there are
 * some and `work` (about the floating-point operations of all the tasks) is worth their start-up, else
 * in the calling thread; returns when all are done. Each task must write outputs of its own: which
 * thread runs a task then changes no bit of the result. Called by several threads at once, one of them
 * hands its tasks out, the others run theirs inline. */
void run_tasks(task_fn fn, void *context, int count, double work);

/* How many threads run_tasks may use (the calling thread included; 1: none besides it). */
void set_threads(int threads);
int kernel_threads(void);

/* How many run_tasks calls offered their tasks to helpers (in this process, since it started) */
long shared_runs(void);

#endif
