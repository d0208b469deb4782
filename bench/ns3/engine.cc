// bench/ns3/engine.cc: the event patterns of bench/sim-engine.ts on ns-3's
// simulator core, so our engine's events/s can be set beside a mainstream
// discrete-event simulator's in the same run. Built and run by
// bench/sim-engine.ts --vs-ns3 against Debian's libns3-dev.
//
//   engine PATTERN SCHEDULER EVENTS QUEUE SEED
//
// PATTERN: timers | cancel | burst (ns-3 has one kind of event, so the
// "messages" pattern is the same as "timers" there). SCHEDULER: an ns-3
// scheduler type id, e.g. ns3::MapScheduler (the default) or
// ns3::HeapScheduler. Prints "PATTERN EVENTS SECONDS CHECKSUM RSS_KIB".
#include "ns3/core-module.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

using namespace ns3;

namespace {

uint64_t g_state;
// xorshift64*: the same distributions as the TypeScript bench, not the same stream.
uint32_t NextU32() {
  g_state ^= g_state >> 12;
  g_state ^= g_state << 25;
  g_state ^= g_state >> 27;
  return static_cast<uint32_t>((g_state * 2685821657736338717ULL) >> 32);
}
uint32_t Below(uint32_t n) { return static_cast<uint32_t>((static_cast<uint64_t>(NextU32()) * n) >> 32); }

int64_t g_left = 0;
int64_t g_events = 0;
uint64_t g_checksum = 0;
bool g_cancel = false;

void Noop() {}

void Note(uint64_t id) {
  g_events++;
  g_checksum = (g_checksum * 31 + id + static_cast<uint64_t>(Simulator::Now().GetMilliSeconds())) % 1000000007ULL;
}

void Fire(uint32_t id) {
  Note(id);
  if (g_cancel) {
    EventId t = Simulator::Schedule(Seconds(30), &Noop);
    t.Cancel();
  }
  if (--g_left > 0) {
    Simulator::Schedule(MilliSeconds(Below(100)), &Fire, id);
  } else {
    Simulator::Stop();
  }
}

void Burst() {
  Note(0);
  if (--g_left > 0) {
    Simulator::Schedule(MilliSeconds(Below(2)), &Burst);
  } else {
    Simulator::Stop();
  }
}

long RssKib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: engine PATTERN SCHEDULER EVENTS QUEUE SEED\n");
    return 2;
  }
  const std::string pattern = argv[1];
  const int64_t events = std::atoll(argv[3]);
  const uint32_t queue = static_cast<uint32_t>(std::atol(argv[4]));
  g_state = 0x9E3779B97F4A7C15ULL ^ static_cast<uint64_t>(std::atoll(argv[5]));
  if (g_state == 0) g_state = 1;
  g_left = events;

  ObjectFactory factory;
  factory.SetTypeId(argv[2]);
  Simulator::SetScheduler(factory);

  if (pattern == "burst") {
    for (int i = 0; i < 64; i++) Simulator::Schedule(MilliSeconds(0), &Burst);
  } else if (pattern == "timers" || pattern == "cancel") {
    g_cancel = pattern == "cancel";
    for (uint32_t i = 0; i < queue; i++) Simulator::Schedule(MilliSeconds(Below(100)), &Fire, i);
  } else {
    std::fprintf(stderr, "unknown pattern %s\n", pattern.c_str());
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Simulator::Run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s %lld %.6f %llu %ld\n", pattern.c_str(), static_cast<long long>(g_events), seconds,
              static_cast<unsigned long long>(g_checksum), RssKib());
  Simulator::Destroy();
  return 0;
}
