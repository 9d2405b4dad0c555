/* tt_threads.h - the thread count of oneDNN / OpenMP compute, for every thread.
 *
 * OpenMP's omp_set_num_threads() sets the value of the calling thread only: a
 * thread started later (a Python threading.Thread, a loader thread) begins
 * with OpenMP's default (all cores, or OMP_NUM_THREADS). The core therefore
 * keeps one process-wide setting (the only such state: it is what the user's
 * tt.set_num_threads means) and every compute entry point applies it to the
 * thread it runs on. oneDNN primitives size their work split and scratchpad by
 * the OpenMP thread count at creation, so an engine records the count it was
 * built with and runs with that count; the binding rebuilds engines whose
 * count differs from the current setting.
 */
#ifndef TT_THREADS_H
#define TT_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Sets the process-wide thread count (n >= 1; values < 1 are ignored) and the
 * calling thread's OpenMP value. Thread-safe. */
void tt_set_num_threads(int n);

/* The process-wide thread count: the last tt_set_num_threads value, or, before
 * any, OpenMP's default for a new thread (omp_get_max_threads on first use). */
int tt_get_num_threads(void);

/* Makes the calling thread's OpenMP thread count `n` (n < 1: the process-wide
 * setting) and returns the count OpenMP will now use on this thread
 * (omp_get_max_threads()), i.e. what oneDNN's parallel regions get. */
int tt_use_num_threads(int n);

#ifdef __cplusplus
}
#endif
#endif /* TT_THREADS_H */
