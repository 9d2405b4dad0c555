/* threads.c - the process-wide thread count (see tt_threads.h). */
#include "core/tt_threads.h"

#include <omp.h>
#include <stdatomic.h>

/* 0 = not set yet: OpenMP's default. The one process-wide setting of the core. */
static atomic_int num_threads_setting = 0;
static atomic_int omp_default = 0;

void tt_set_num_threads(int n) {
    if (n < 1) return;
    atomic_store(&num_threads_setting, n);
    omp_set_num_threads(n);
}

int tt_get_num_threads(void) {
    int n = atomic_load(&num_threads_setting);
    if (n > 0) return n;
    /* OpenMP's default as a new thread sees it (first caller's value, before any set) */
    int d = atomic_load(&omp_default);
    if (d < 1) {
        int expected = 0;
        d = omp_get_max_threads();
        if (!atomic_compare_exchange_strong(&omp_default, &expected, d)) d = expected;
    }
    return d;
}

int tt_use_num_threads(int n) {
    if (n < 1) n = tt_get_num_threads();
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
    return omp_get_max_threads();
}
