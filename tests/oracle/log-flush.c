/* log-flush.c — preloaded into llama.cpp's CLI tools by tests/oracle/llama-run. Their logger
 * writes from a background thread and is never flushed at exit, so the last lines (the
 * summary the tests read) are sometimes lost; this waits 0.3 s at exit for the thread. */
#include <unistd.h>

__attribute__((destructor)) static void wait_for_log_thread(void) { usleep(300000); }
