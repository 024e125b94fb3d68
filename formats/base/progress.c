/* progress.c — monotonic time for progress and durations. */
#include "progress.h"

#include <time.h>

double smelt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
