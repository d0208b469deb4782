/**
 * The process's own metrics under their standard Prometheus names
 * (`process_*`, as the official client libraries export them), for an
 * exposition that describes the whole process: a tracker's /metrics and
 * the dashboard's. They are added once per exposition, never per source,
 * since several sources (a tracker, clients, DHT nodes) can share one
 * process.
 */
import type { MetricFamily } from './prometheus.js';

/** `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_start_time_seconds`. */
export function processMetricFamilies(): MetricFamily[] {
  const cpu = process.cpuUsage();
  return [
    { name: 'process_cpu_seconds_total', type: 'counter', help: 'Total user and system CPU time spent in seconds.', samples: [[undefined, (cpu.user + cpu.system) / 1e6]] },
    { name: 'process_resident_memory_bytes', type: 'gauge', help: 'Resident memory size in bytes.', samples: [[undefined, process.memoryUsage.rss()]] },
    // Seconds since the epoch, to the millisecond: wall clock now minus the process's uptime.
    { name: 'process_start_time_seconds', type: 'gauge', help: 'Start time of the process since unix epoch in seconds.', samples: [[undefined, Math.round(Date.now() - process.uptime() * 1000) / 1000]] },
  ];
}

/** Whether a family name is one of the process-wide ones (a source must not bring its own). */
export function isProcessMetric(name: string): boolean {
  return name.startsWith('process_');
}
