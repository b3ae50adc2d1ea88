// The embedded runtime's socket budget follows the process's descriptor limit, so sockets never take
// the descriptors the store needs (before: many origins under a low `ulimit -n` ended with every
// record chunk_failed, EMFILE opening the result files).
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_DEFAULTS } from '../functions/core/engine/agent.ts';
import { DESCRIPTOR_DEFAULTS, descriptorLimit, localMaxSockets } from '../functions/local/descriptors.ts';
import { cliBin, runCommand } from './support/cli.ts';
import { tempDir } from './support/tmp.ts';

describe('localMaxSockets', () => {
  it('is the default when descriptors are plenty, else each worker its share after the reserve', () => {
    expect(localMaxSockets(1, 1_048_576)).toBe(AGENT_DEFAULTS.localMaxSockets);
    expect(localMaxSockets(1, undefined)).toBe(AGENT_DEFAULTS.localMaxSockets);
    expect(localMaxSockets(2, 1024)).toBe((1024 - DESCRIPTOR_DEFAULTS.reserve) / 2);
    expect(localMaxSockets(4, 256)).toBe(32);
    expect(localMaxSockets(8, 100)).toBe(DESCRIPTOR_DEFAULTS.minSockets);
  });

  it('reads the open-files limit from /proc/self/limits', () => {
    expect(descriptorLimit(() => 'Max cpu time  unlimited unlimited seconds\nMax open files            256                  4096                 files\n')).toBe(256);
    expect(descriptorLimit(() => { throw new Error('ENOENT'); })).toBeUndefined();
    expect(descriptorLimit()).toBe(Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]));
  });
});

describe('fanout fetch under a low descriptor limit', () => {
  const servers: Server[] = [];
  const urls: string[] = [];
  beforeAll(async () => {
    // 300 distinct origins (one server each on loopback): each needs a connection of its own.
    for (let i = 0; i < 300; i++) {
      const server = createServer((_req, res) => res.end('ok'));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`);
    }
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });

  it('300 origins at concurrency 100 under ulimit -n 200: every record ok, nothing chunk_failed', async () => {
    const dir = tempDir();
    const list = join(dir, 'urls.txt');
    writeFileSync(list, urls.join('\n') + '\n');
    const bin = await cliBin();
    const run = await runCommand(
      'bash',
      ['-c', 'ulimit -n 200 && exec "$0" "$@"', process.execPath, bin, 'fetch', list, '--workers', '1', '--concurrency', '100', '--chunk-size', '100', '--data-dir', join(dir, 'data'), '--json', '--quiet'],
      { env: { ...process.env, FANOUT_MAX_SOCKETS: '' } },
    );
    expect(run.stderr).not.toContain('EMFILE');
    expect(run.code).toBe(0);
    const status = JSON.parse(run.stdout) as { succeeded: number; failed: number; byError: Record<string, number> };
    expect(status.byError).toEqual({});
    expect(status.succeeded).toBe(300);
  }, 60_000);
});
