/**
 * Issue 14 item 9, "restarts that come faster than one chunk make no progress at all": a local
 * delivery keeps its records as part files every `partEveryMs` (as a Lambda does near its deadline),
 * so a process killed mid-chunk refetches only the URL it had in flight.
 *
 * The origin itself kills the process: when URL i is requested (i past a threshold) it waits until
 * the parts on disk cover every URL before i, then sends SIGKILL. So what a kill loses is the same
 * on every run: URL i alone. Before local part files, every kill lost the whole chunk.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partsChain } from '../functions/core/continuation.ts';
import { layout } from '../functions/core/layout.ts';
import { readNdjsonGz } from '../functions/core/ndjson.ts';
import type { FetchRecord } from '../functions/core/record.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { tempDir } from './support/tmp.ts';

const script = fileURLToPath(new URL('./fixtures/scripts/restart-job.ts', import.meta.url));
const URLS = 20;
/** Kill the first run at URL 5, the second at URL 12; the third runs to the end. */
const KILL_AT = [5, 12];

const dataDir = tempDir();
const store = new LocalStore(dataDir);
const hits = new Array<number>(URLS).fill(0);
let jobId = '';
let child: ChildProcess | undefined;
let kills = 0;
let server: Server;
let base = '';

async function keptUpTo(): Promise<number> {
  return jobId ? (await partsChain(store, jobId, 0)).next : 0;
}

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const i = Number(new URL(req.url!, 'http://x').searchParams.get('i'));
    hits[i]!++;
    const threshold = KILL_AT[kills];
    if (child && threshold !== undefined && i >= threshold) {
      // Wait (bounded) until the parts on disk hold every URL before this one, then kill.
      for (let t = 0; t < 200 && (await keptUpTo()) < i; t++) await new Promise((r) => setTimeout(r, 10));
      kills++;
      child.kill('SIGKILL');
      child = undefined;
      req.socket.destroy();
      return;
    }
    setTimeout(() => res.end(`url ${i}`), 60);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** One run of the job process; resolves with its exit (a kill included). */
function run(args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', script, dataDir, '100', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => {
      const first = /"jobId":"([^"]+)"/.exec(d.toString());
      if (first) jobId = first[1]!;
    });
    proc.stderr!.on('data', (d) => (err += d));
    proc.on('error', reject);
    proc.on('close', (code, signal) => (signal === 'SIGKILL' ? resolve(null) : code === 0 ? resolve(0) : reject(new Error(err))));
  });
}

describe('progress survives restarts faster than a chunk', () => {
  it('a chunk killed twice mid-way completes; each URL is fetched at most once more than needed; one record per line, in order', async () => {
    const urls = Array.from({ length: URLS }, (_, i) => `${base}/slow?i=${i}`).join('\n');
    expect(await run(['submit', urls])).toBeNull();
    expect(await run(['resume'])).toBeNull();
    expect(await run(['resume'])).toBe(0);
    expect(kills).toBe(2);

    // Only the URL in flight at each kill was fetched again.
    expect(Math.max(...hits)).toBeLessThanOrEqual(2);
    expect(hits.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(URLS + KILL_AT.length);

    const records: FetchRecord[] = [];
    for await (const record of readNdjsonGz<FetchRecord>((await store.getStream(layout.results(jobId, 0)))!)) records.push(record);
    expect(records.map((r) => r.index)).toEqual(Array.from({ length: URLS }, (_, i) => i));
    expect(records.every((r) => r.ok && r.status === 200)).toBe(true);
    // The parts are gone once the result file holds them.
    expect((await partsChain(store, jobId, 0)).parts).toEqual([]);
  }, 30_000);
});
