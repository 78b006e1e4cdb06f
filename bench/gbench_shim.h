/* A small C API over Google Benchmark, so that fattn's benchmarks are written
 * in C. gbench_shim.cc is the project's only C++. */
#ifndef FATTN_GBENCH_SHIM_H
#define FATTN_GBENCH_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gb_state gb_state; /* benchmark::State */
typedef void (*gb_fn)(gb_state *st, void *arg);

/* Registers `fn(st, arg)` under `name` (copied); timed in wall-clock time. */
void gb_register(const char *name, gb_fn fn, void *arg);
/* The timing loop: while (gb_keep_running(st)) { ... } */
int gb_keep_running(gb_state *st);
/* A counter shown per benchmark. per_second: value is per iteration and is
 * reported divided by the time of one iteration (GFLOPS, GBps). */
void gb_counter(gb_state *st, const char *name, double value, int per_second);
void gb_skip(gb_state *st, const char *message);
void gb_pause(gb_state *st);
void gb_resume(gb_state *st);
/* Adds a line to the context header printed before the results. */
void gb_context(const char *key, const char *value);
/* Initialises Google Benchmark with argv (its own flags), runs, shuts down. */
int gb_run(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
