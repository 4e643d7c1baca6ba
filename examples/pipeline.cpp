// pipeline — data that travels once: object references.
//
// A signal of 2 Mi samples (8 MiB) is generated on a worker, smoothed on a
// worker, and scored in 16 windows fanned out over the workers. Each step
// gets its result back as a reference (`remote_ref`), so in distributed mode
// the samples go from worker to worker through storage (`storage.path`, here
// the default directory under /tmp that every process on this machine sees)
// and never cross this process's connections; each window call sends the
// data's name, 48 bytes. A table of gains made here is `put` once and used by
// every window. Run it as is, or over workers:
//
//   ./pipeline --framex-worker --listen 127.0.0.1:7001 &
//   FRAMEX_RUNTIME__MODE=distributed FRAMEX_DISTRIBUTED__WORKERS=127.0.0.1:7001 ./pipeline
//
// It exits with 1 if the pipeline's figure differs from the same steps run
// here directly.
#include <framex/fan_out.hpp>
#include <framex/framex.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <tuple>
#include <vector>

namespace asio = boost::asio;
using samples = std::vector<float>;

samples generate(std::uint32_t n, std::uint32_t seed) {
  samples out(n);
  std::uint32_t state = seed;
  for (auto& x : out) {
    state = state * 1664525u + 1013904223u;
    x = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
  }
  return out;
}

samples smooth(const samples& in) {  // a moving average over 8 samples
  samples out(in.size());
  float window = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    window += in[i] - (i >= 8 ? in[i - 8] : 0.0f);
    out[i] = window / 8;
  }
  return out;
}

double window_energy(const samples& signal, const samples& gains, std::uint32_t window, std::uint32_t windows) {
  const std::size_t size = signal.size() / windows, begin = size * window;
  double energy = 0;
  for (std::size_t i = begin; i < begin + size; ++i) energy += double(signal[i]) * signal[i] * gains[i % gains.size()];
  return energy;
}

inline constexpr auto generate_fn = framex::remote<&generate>;
inline constexpr auto smooth_fn = framex::remote<&smooth>;
inline constexpr auto energy_fn = framex::remote<&window_energy>;

constexpr std::uint32_t n = 1u << 21, windows = 16;

asio::awaitable<int> demo() {
  const auto before = framex::storage_counters();
  auto raw = co_await generate_fn.remote_ref(n, 7);  // made on a worker; written to storage there
  auto clean = co_await smooth_fn.remote_ref(raw);   // read there, smoothed, written again
  samples table(1u << 18);                           // 1 MiB of gains, made here
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = 1.0f + static_cast<float>(i % 3) / 10;
  auto gains = co_await framex::put(std::move(table));  // written once; each worker reads it once

  std::vector<std::tuple<framex::object_ref<samples>, framex::object_ref<samples>, std::uint32_t, std::uint32_t>> jobs;
  for (std::uint32_t w = 0; w < windows; ++w) jobs.emplace_back(clean, gains, w, windows);
  const framex::map_options eight{.max_in_flight = 8};
  const std::vector<double> energies = co_await framex::map(energy_fn, jobs, eight);
  double total = 0;
  for (double e : energies) total += e;

  // The same steps, here and now.
  const samples here = smooth(generate(n, 7));
  double expected = 0;
  for (std::uint32_t w = 0; w < windows; ++w) expected += window_energy(here, *gains.share(), w, windows);

  std::uint64_t sent = 0;
  for (const auto& w : framex::stats(framex::runtime::current()).workers) sent += w.bytes_sent;
  const auto after = framex::storage_counters();
  std::printf("%-26s = %.6f\n", "energy of 16 windows", total);
  std::printf("%-26s = %s\n", "samples went", raw.spilled() && clean.spilled() ? "through storage" : "nowhere: held here");
  std::printf("%-26s = %s\n", "gains went", gains.spilled() ? "to storage, once" : "nowhere: held here");
  std::printf("%-26s = %llu\n", "objects written here", static_cast<unsigned long long>(after.objects_written - before.objects_written));
  std::printf("%-26s = %.1f KiB\n", "sent to workers", static_cast<double>(sent) / 1024);
  if (std::abs(total - expected) > 1e-9 * std::abs(expected)) {
    std::fprintf(stderr, "the pipeline's energy %.9f differs from %.9f\n", total, expected);
    co_return 1;
  }
  co_return 0;
}

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  asio::io_context io;
  auto failed = asio::co_spawn(io, demo(), asio::use_future);
  io.run();
  return failed.get();
}
