// The only C++ in fattn: exposes Google Benchmark through gbench_shim.h.
#include "gbench_shim.h"

#include <benchmark/benchmark.h>

#include <string>

struct gb_state {
  benchmark::State *s;
};

extern "C" void gb_register(const char *name, gb_fn fn, void *arg) {
  benchmark::RegisterBenchmark(std::string(name).c_str(),
                               [fn, arg](benchmark::State &s) {
                                 gb_state st{&s};
                                 fn(&st, arg);
                               })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

extern "C" int gb_keep_running(gb_state *st) { return st->s->KeepRunning(); }

extern "C" void gb_counter(gb_state *st, const char *name, double value, int per_second) {
  st->s->counters[name] =
      benchmark::Counter(value, per_second ? benchmark::Counter::kIsIterationInvariantRate
                                           : benchmark::Counter::kDefaults);
}

extern "C" void gb_skip(gb_state *st, const char *message) { st->s->SkipWithError(message); }
extern "C" void gb_pause(gb_state *st) { st->s->PauseTiming(); }
extern "C" void gb_resume(gb_state *st) { st->s->ResumeTiming(); }
extern "C" void gb_context(const char *key, const char *value) {
  benchmark::AddCustomContext(key, value);
}

extern "C" int gb_run(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
