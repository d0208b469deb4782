/**
 * `--dashboard [HOST:]PORT` and `--dashboard-token TOKEN` (or the
 * PEERKIT_DASHBOARD_TOKEN environment variable), shared by the long-running
 * commands. The host defaults to 127.0.0.1; any other address is refused
 * without a token.
 */
import type { Command } from 'commander';
import { checkBind, parseListenAddress } from '../dashboard/access.js';
import { startDashboard, type DashboardHandle } from '../dashboard/server.js';
import type { DashboardSource } from '../dashboard/source.js';
import { DhtSource, type DhtLike } from '../dashboard/dht-source.js';
import { UsageError } from './format.js';

export interface DashboardCliOptions {
  dashboard?: string;
  dashboardToken?: string;
}

export const DASHBOARD_TOKEN_ENV = 'PEERKIT_DASHBOARD_TOKEN';

export function addDashboardOptions(cmd: Command): Command {
  return cmd
    .option('--dashboard <[host:]port>', 'serve a live web dashboard (default host 127.0.0.1; another address needs a token)')
    .option('--dashboard-token <token>', `access token the dashboard requires on every request (16+ URL-safe characters; or ${DASHBOARD_TOKEN_ENV})`);
}

/** Checks the options without starting anything; throws a UsageError. */
export function dashboardSettings(o: DashboardCliOptions, env: NodeJS.ProcessEnv = process.env): { host: string; port: number; token: string | undefined } | undefined {
  const envToken = env[DASHBOARD_TOKEN_ENV] === '' ? undefined : env[DASHBOARD_TOKEN_ENV];
  if (o.dashboard === undefined) {
    if (o.dashboardToken !== undefined) throw new UsageError('--dashboard-token needs --dashboard [HOST:]PORT');
    return undefined;
  }
  const token = o.dashboardToken ?? envToken;
  try {
    const { host, port } = parseListenAddress(o.dashboard);
    checkBind(host, token);
    return { host, port, token };
  } catch (e) {
    throw new UsageError(`--dashboard: ${(e as Error).message}`);
  }
}

/** Starts the dashboard if asked for, and says where it is. */
export async function startCliDashboard(o: DashboardCliOptions, sources: readonly DashboardSource[], say: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<DashboardHandle | undefined> {
  const settings = dashboardSettings(o, env);
  if (settings === undefined) return undefined;
  const d = await startDashboard({ ...settings, sources });
  say(`dashboard: ${d.url}`);
  return d;
}

/**
 * For `peerkit dht --dashboard`: starts the dashboard (if asked for) with the
 * node as a DHT source named `dht`. Call after the node has started.
 */
export function startDhtDashboard(o: DashboardCliOptions, node: DhtLike, say: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<DashboardHandle | undefined> {
  return startCliDashboard(o, [new DhtSource('dht', node)], say, env);
}
