/**
 * `npm run bench`: fanout against its peers, measured side by side in one run on this machine.
 *
 * What a user waits for is a whole process, so the headline figures are whole processes: each one
 * spawned, timed from spawn to exit, the contestants alternating (A B C A B C ...) over several
 * rounds, the median quoted. fanout runs as installed: `node build/cli/fanout.mjs` (the prebuilt
 * bundle; `bin/fanout.mjs` is timed too for `--version`). The origin (nginx when installed, else a
 * Node server) is pinned to the last core and every client to core 0 with taskset, so each client
 * gets one core. Scenarios:
 *   s. start-up: `fanout --version` against `node -e 0` (target: under 150 ms); `fanout fetch` of one URL
 *   a. throughput: 40,000 x 1 KiB, concurrency 100, bodies none: the `fanout fetch` process against
 *      the bare undici loop's process (target: within 1.35x) and aiohttp + gather's (target: 3x faster)
 *   b. latency-bound: 5,000 URLs that each take 100 ms, concurrency 500 (ideal 1.0 s; target 1.25x),
 *      with the default socket budget and with FANOUT_MAX_SOCKETS=500; and fanout and the loop not
 *      pinned (as users run them; the origin stays on its core)
 *   c. scale: 1,000,000 URLs end to end with records written (BENCH_SCALE to change the count)
 *   d. cores: `fanout fetch --workers 2` (threads, unpinned) against `--workers 1`
 *   e. the Lambda bundles: size and import time on Node 24
 * Each target is printed with its ratio and whether it is met. BENCH_QUICK=1 runs smaller counts and
 * fewer rounds (to check the code, not to quote); BENCH_ROUNDS=N sets the rounds; BENCH_ONLY=s,a,b
 * runs only those scenarios; BENCH_JSON=FILE writes every sample as JSON.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Socket, createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundles } from '../scripts/build.ts';
import { ensureNode24 } from '../test/support/node24.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const quick = process.env.BENCH_QUICK === '1';
const only = new Set((process.env.BENCH_ONLY ?? 's,a,b,c,d,e').split(',').map((x) => x.trim()));
const wants = (scenario: 's' | 'a' | 'b' | 'c' | 'd' | 'e') => only.has(scenario);

/** Every count, round and target of the bench, stated once. */
const BENCH = {
  rounds: Number(process.env.BENCH_ROUNDS ?? (quick ? 2 : 5)),
  startupRounds: quick ? 5 : 21,
  throughputCount: quick ? 10_000 : 40_000,
  throughputConcurrency: 100,
  geventCount: quick ? 5_000 : 20_000,
  latencyCount: quick ? 1_000 : 5_000,
  latencyConcurrency: 500,
  delayMs: 100,
  scale: Number(process.env.BENCH_SCALE ?? (quick ? 100_000 : 1_000_000)),
  targets: {
    versionMs: 150,
    vsUndici: 1.35,
    vsAiohttp: 3,
    latencyVsIdeal: 1.25,
    scaleSeconds: 120,
    scaleRssMiB: 512,
    bundleBytes: 1024 * 1024,
    bundleImportMs: 150,
  },
} as const;

const work = mkdtempSync(join(tmpdir(), 'fanout-bench-'));
chmodSync(work, 0o755); // nginx's workers run as an unprivileged user and must read its files
const cores = availableParallelism();
const clientCore = '0';
const originCore = String(cores - 1);
const hasTaskset = existsSync('/usr/bin/taskset');
const hasTime = existsSync('/usr/bin/time');
const nginxBin = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(existsSync);
const echoModule = '/usr/lib/nginx/modules/ngx_http_echo_module.so';
const python = ['/usr/bin/python3'].find((p) => existsSync(p));
const cli = join(root, 'build/cli/fanout.mjs');
const bin = join(root, 'bin/fanout.mjs');

/** One whole process: wall time from spawn to exit, and what /usr/bin/time saw of it. */
interface ProcessRun {
  wallS: number;
  /** Date.now() at spawn and at exit, to place the job's own timestamps in the process. */
  spawnedAt: number;
  exitedAt: number;
  cpuS?: number;
  rssMiB?: number;
  stdout: string;
  stderr: string;
  code: number | null;
}

/** One sample of a contestant: its process, and the time it reports itself (job or loop). */
interface Sample {
  process: ProcessRun;
  innerS?: number;
  ok?: number;
  requests?: number;
  /** fanout only: seconds from spawn to the job's createdAt (start-up, reading and planning the list) and from finishedAt to exit. */
  beforeJobS?: number;
  afterJobS?: number;
}

/**
 * Spawns a process (pinned to the client core unless `pin` is false), times it from spawn to
 * exit, and with `rusage` reads its CPU time and peak RSS from /usr/bin/time.
 */
function timeProcess(cmd: string, args: string[], opts: { pin?: boolean; rusage?: boolean; env?: Record<string, string> } = {}): Promise<ProcessRun> {
  let argv = [cmd, ...args];
  const rusage = (opts.rusage ?? true) && hasTime;
  if (rusage) argv = ['/usr/bin/time', '-f', 'BENCHTIME %e %U %S %M', ...argv];
  if ((opts.pin ?? true) && hasTaskset) argv = ['taskset', '-c', clientCore, ...argv];
  return new Promise((resolve) => {
    const t0 = performance.now();
    const spawnedAt = Date.now();
    let exitedAt = 0;
    let exitedAtMs = 0;
    const child = spawn(argv[0]!, argv.slice(1), { cwd: root, env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', () => {
      exitedAt = performance.now();
      exitedAtMs = Date.now();
    });
    child.on('close', (code) => {
      const wallS = ((exitedAt || performance.now()) - t0) / 1000;
      const time = /BENCHTIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(stderr);
      if (time) stderr = stderr.replace(time[0], '');
      resolve({
        wallS,
        spawnedAt,
        exitedAt: exitedAtMs || Date.now(),
        cpuS: time ? Number(time[2]) + Number(time[3]) : undefined,
        rssMiB: time ? Number(time[4]) / 1024 : undefined,
        stdout,
        stderr,
        code,
      });
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Contestant {
  name: string;
  run: () => Promise<Sample>;
}

interface Result {
  name: string;
  samples: Sample[];
  /** Median process time, seconds. */
  processS: number;
  /** Median of the time the process reports itself (job time, loop time). */
  innerS?: number;
  cpuS?: number;
  rssMiB?: number;
  requests?: number;
  ok?: number;
  beforeJobS?: number;
  afterJobS?: number;
}

function summarise(name: string, samples: Sample[]): Result {
  const of = (f: (s: Sample) => number | undefined) => {
    const xs = samples.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  return {
    name,
    samples,
    processS: median(samples.map((s) => s.process.wallS)),
    innerS: of((s) => s.innerS),
    cpuS: of((s) => s.process.cpuS),
    rssMiB: of((s) => s.process.rssMiB),
    requests: samples[0]?.requests,
    ok: of((s) => s.ok),
    beforeJobS: of((s) => s.beforeJobS),
    afterJobS: of((s) => s.afterJobS),
  };
}

/** Runs the contestants in turn, `rounds` times (A B C A B C ...): each sees the same machine. */
async function alternate(rounds: number, contestants: Contestant[]): Promise<Result[]> {
  const samples = contestants.map(() => [] as Sample[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of contestants.entries()) samples[i]!.push(await c.run());
  }
  return contestants.map((c, i) => summarise(c.name, samples[i]!));
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

interface Origins {
  url1k: string;
  /** The delayed answer the latency scenario uses (nginx's echo module when installed). */
  urlDelay: string;
  /** The same delay from the Node origin (the previous runs' origin), for reference. */
  urlDelayNode: string;
  kind: string;
  delayKind: string;
  stop(): void;
}

/** nginx for the 1 KiB answers (and the delayed ones with its echo module), and a Node origin. */
async function startOrigins(): Promise<Origins> {
  const nodePort = await freePort();
  const nodeOrigin = spawn(...pinnedOrigin(process.execPath, ['--import', 'tsx', join(root, 'bench/origin-server.ts'), String(nodePort)]), {
    cwd: root,
    stdio: 'ignore',
  });
  await waitForPort(nodePort);
  const urlDelayNode = `http://127.0.0.1:${nodePort}/delay/${BENCH.delayMs}`;
  let nginx: ReturnType<typeof spawn> | undefined;
  let url1k = `http://127.0.0.1:${nodePort}/1k`;
  let urlDelay = urlDelayNode;
  let kind = 'a Node http server';
  let delayKind = 'a Node http server (setTimeout)';
  if (nginxBin) {
    const dir = join(work, 'nginx');
    mkdirSync(join(dir, 'html'), { recursive: true });
    writeFileSync(join(dir, 'html', '1k'), 'x'.repeat(1024));
    const port = await freePort();
    const echo = existsSync(echoModule);
    writeFileSync(
      join(dir, 'nginx.conf'),
      `${echo ? `load_module ${echoModule};` : ''}
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 8192; multi_accept on; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 120s; default_type text/plain;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port} backlog=4096; root ${dir}/html;
    ${echo ? `location = /delay/${BENCH.delayMs} { echo_sleep ${BENCH.delayMs / 1000}; echo_duplicate 1024 "x"; }` : ''} } }`,
    );
    nginx = spawn(...pinnedOrigin(nginxBin, ['-c', join(dir, 'nginx.conf'), '-p', dir]), { stdio: 'ignore' });
    await waitForPort(port);
    url1k = `http://127.0.0.1:${port}/1k`;
    kind = 'nginx (one worker)';
    if (echo) {
      urlDelay = `http://127.0.0.1:${port}/delay/${BENCH.delayMs}`;
      delayKind = 'nginx with its echo module (echo_sleep)';
    }
  }
  return {
    url1k,
    urlDelay,
    urlDelayNode,
    kind,
    delayKind,
    stop() {
      nodeOrigin.kill();
      nginx?.kill('SIGQUIT');
    },
  };
}

function pinnedOrigin(cmd: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', originCore, cmd, ...args]] : [cmd, args];
}

/** The kernel's count of connections dropped by full listen queues (a dropped SYN costs a 1 s retry). */
function listenOverflows(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    return Number(values[names.indexOf('ListenOverflows')]);
  } catch {
    return undefined;
  }
}

function urlList(file: string, base: string, count: number): void {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`${base}?i=${i}`);
  writeFileSync(file, lines.join('\n') + '\n');
}

/** A peer script: its whole process, and the loop time it prints (JSON on its last line). */
function peer(name: string, cmd: string, args: string[], pin = true): Contestant {
  return {
    name,
    async run() {
      const p = await timeProcess(cmd, args, { pin });
      if (p.code !== 0) throw new Error(`${name} failed: ${p.stderr.trim().split('\n').at(-1)}`);
      const json = JSON.parse(p.stdout.trim().split('\n').at(-1)!);
      return { process: p, innerS: json.seconds, ok: json.ok, requests: json.requests };
    },
  };
}

/** The whole `fanout fetch` process (the installed bundle): records written, manifest, everything. */
function fanoutFetch(name: string, file: string, flags: string[], pin = true, env: Record<string, string> = {}): Contestant {
  return {
    name,
    async run() {
      const dataDir = mkdtempSync(join(work, 'data-'));
      const args = [cli, 'fetch', file, '--json', '--no-progress', '--data-dir', dataDir, '--retries', '0', ...flags];
      const p = await timeProcess(process.execPath, args, { pin, env });
      // The data folder stays until the bench ends (main removes the work folder), as a user's does.
      // Removed here, its few hundred files would slow the next runs' file creations: this disk's
      // ext4 has no journal, and then its inode allocator skips (reading each from the inode table)
      // every inode freed in the last minutes. A fanout run deleted 200 files for the next one.
      if (p.code !== 0) throw new Error(`fanout fetch failed: ${p.stderr}`);
      const status = JSON.parse(p.stdout);
      const jobS = (Date.parse(status.finishedAt) - Date.parse(status.createdAt)) / 1000;
      return {
        process: p,
        innerS: jobS,
        ok: status.succeeded,
        requests: status.total,
        beforeJobS: (Date.parse(status.createdAt) - p.spawnedAt) / 1000,
        afterJobS: (p.exitedAt - Date.parse(status.finishedAt)) / 1000,
      };
    },
  };
}

/** A bare command (start-up): spawn to exit, no /usr/bin/time in between. */
function command(name: string, cmd: string, args: string[]): Contestant {
  return {
    name,
    async run() {
      const p = await timeProcess(cmd, args, { rusage: false });
      if (p.code !== 0) throw new Error(`${name} failed: ${p.stderr}`);
      return { process: p };
    },
  };
}

const fmtS = (s: number | undefined) => (s === undefined ? '' : s.toFixed(2));
const fmtMs = (s: number) => `${(s * 1000).toFixed(0)} ms`;

function table(title: string, rows: Result[], reference: Result, innerLabel: string): void {
  console.log(`\n### ${title}\n`);
  console.log(`| client | process s (median) | ${innerLabel} (median) | req/s (process) | process vs ${reference.name} | CPU s | peak RSS MiB | process s, each run |`);
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const rate = r.requests ? Math.round(r.requests / r.processS) : '';
    const ratio = `${(r.processS / reference.processS).toFixed(2)}x`;
    const runs = r.samples.map((s) => s.process.wallS.toFixed(2)).join(', ');
    const ok = r.ok !== undefined && r.requests !== undefined && r.ok !== r.requests ? ` (${r.ok} ok of ${r.requests})` : '';
    console.log(
      `| ${r.name}${ok} | ${fmtS(r.processS)} | ${fmtS(r.innerS)} | ${rate} | ${ratio} | ${fmtS(r.cpuS)} | ${r.rssMiB?.toFixed(0) ?? ''} | ${runs} |`,
    );
  }
  for (const r of rows) {
    if (r.beforeJobS === undefined) continue;
    console.log(
      `\n${r.name}, medians: ${fmtS(r.beforeJobS)} s from spawn to the job's creation (start-up, reading and planning the list), ${fmtS(r.innerS)} s job, ${fmtS(r.afterJobS)} s from its end to exit`,
    );
  }
}

const targets: { name: string; value: string; met: boolean }[] = [];
function target(name: string, value: string, met: boolean): void {
  targets.push({ name, value, met });
}
const report: Record<string, unknown> = {};

async function startup(): Promise<void> {
  const rows = await alternate(BENCH.startupRounds, [
    command('node -e 0', process.execPath, ['-e', '0']),
    command('node build/cli/fanout.mjs --version', process.execPath, [cli, '--version']),
    command('node bin/fanout.mjs --version', process.execPath, [bin, '--version']),
  ]);
  const [node, built, viaBin] = rows as [Result, Result, Result];
  console.log(`\n### s. start-up: whole processes, median of ${BENCH.startupRounds} alternating runs (client core)\n`);
  console.log('| command | median | min | max | vs node -e 0 | over node -e 0 |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    const ws = r.samples.map((s) => s.process.wallS);
    console.log(
      `| ${r.name} | ${fmtMs(r.processS)} | ${fmtMs(Math.min(...ws))} | ${fmtMs(Math.max(...ws))} | ${(r.processS / node.processS).toFixed(2)}x | ${fmtMs(r.processS - node.processS)} |`,
    );
  }
  const limit = BENCH.targets.versionMs / 1000;
  target(`s. fanout --version (build/cli) < ${BENCH.targets.versionMs} ms`, `${fmtMs(built.processS)} (${(built.processS / node.processS).toFixed(2)}x node -e 0)`, built.processS < limit);
  target(`s. fanout --version (bin/fanout.mjs) < ${BENCH.targets.versionMs} ms`, `${fmtMs(viaBin.processS)} (${(viaBin.processS / node.processS).toFixed(2)}x node -e 0)`, viaBin.processS < limit);
  report.startup = rows;
}

async function main(): Promise<void> {
  console.log(`# fanout bench (${new Date().toISOString()}${quick ? ', BENCH_QUICK: not for quoting' : ''})`);
  console.log(
    `machine: ${cores} cores, ${process.version}; clients on core ${clientCore}, origin on core ${originCore}${hasTaskset ? '' : ' (no taskset: not pinned)'}; ${BENCH.rounds} alternating rounds, medians`,
  );
  // bin/fanout.mjs builds build/cli when it is missing or older than the sources: fanout is then timed as installed.
  const ensure = await timeProcess(process.execPath, [bin, '--version'], { rusage: false });
  if (ensure.code !== 0) throw new Error(`bin/fanout.mjs failed: ${ensure.stderr}`);
  if (wants('s')) await startup();
  const origin = await startOrigins();
  console.log(`\norigin: ${origin.kind} for 1 KiB answers; ${origin.delayKind} for the delayed answers`);
  try {
    // (s) continued: one URL, the smallest job, with the default flags (worker threads and all)
    if (wants('s')) await oneUrl(origin);
    await throughputAndCores(origin);
    if (wants('b')) await latency(origin);
    if (wants('c')) await scale(origin);
  } finally {
    origin.stop();
  }
  if (wants('e')) await lambdaBundles();

  console.log('\n### targets\n');
  for (const t of targets) console.log(`- ${t.met ? 'MET    ' : 'NOT MET'} ${t.name}: ${t.value}`);
  if (process.env.BENCH_JSON) {
    const strip = (k: string, v: unknown) => (k === 'stdout' || k === 'stderr' ? undefined : v);
    writeFileSync(process.env.BENCH_JSON, JSON.stringify({ at: new Date().toISOString(), quick, report, targets }, strip, 2));
  }
  rmSync(work, { recursive: true, force: true });
}

async function oneUrl(origin: Origins): Promise<void> {
  const oneFile = join(work, 'one.txt');
  urlList(oneFile, origin.url1k, 1);
  const rows = await alternate(BENCH.rounds, [
    fanoutFetch('fanout fetch, 1 URL (default flags)', oneFile, []),
    peer('bare undici.request loop, 1 URL', process.execPath, [join(root, 'bench/peers/undici-loop.mjs'), origin.url1k, '1', '1']),
  ]);
  table(`s. one URL: whole processes (${BENCH.rounds} alternating rounds)`, rows, rows[0]!, 'job / loop s');
  report.oneUrl = rows;
}

const throughputFile = () => join(work, 'a.txt');
const conc = String(BENCH.throughputConcurrency);
const fetchFlags = ['--workers', '1', '--concurrency', conc, '--per-host', conc, '--bodies', 'none', '--chunk-size', '1000'];

/** (a) throughput, and (d) the same list on one worker thread and on one per core. */
async function throughputAndCores(origin: Origins): Promise<void> {
  const count = BENCH.throughputCount;
  const file = throughputFile();
  urlList(file, origin.url1k, count);
  if (wants('a')) await throughput(origin, file, count);
  if (wants('d')) {
    // Not pinned: the threads need the cores; on this machine the origin shares them.
    const flagsD = ['--concurrency', conc, '--per-host', conc, '--bodies', 'none', '--chunk-size', '1000'];
    const rows = await alternate(Math.min(BENCH.rounds, 3), [
      fanoutFetch('fanout fetch --workers 1', file, ['--workers', '1', ...flagsD], false),
      fanoutFetch(`fanout fetch --workers ${cores} (threads)`, file, ['--workers', String(cores), ...flagsD], false),
    ]);
    table(`d. cores: ${count} x 1 KiB, one worker thread against ${cores} (not pinned; the origin on the same ${cores} cores)`, rows, rows[0]!, 'job s');
    report.cores = rows;
  }
}

/** (a) The three processes the targets compare alternate; the other peers run once, for context. */
async function throughput(origin: Origins, file: string, count: number): Promise<void> {
  const hasAiohttp = python !== undefined && (await timeProcess(python, ['-c', 'import aiohttp'], { rusage: false })).code === 0;
  const hasGevent = python !== undefined && (await timeProcess(python, ['-c', 'import gevent, requests'], { rusage: false })).code === 0;
  if (!hasAiohttp || !hasGevent) console.log('(python3-aiohttp / python3-gevent / python3-requests not installed: those peers skipped)');
  const contestants = [
    fanoutFetch('fanout fetch (records written)', file, fetchFlags),
    peer('bare undici.request loop', process.execPath, [join(root, 'bench/peers/undici-loop.mjs'), origin.url1k, String(count), conc]),
  ];
  if (hasAiohttp) contestants.push(peer('aiohttp + asyncio.gather', python!, [join(root, 'bench/peers/aiohttp_gather.py'), origin.url1k, String(count), conc]));
  const compared = await alternate(BENCH.rounds, contestants);
  const others = [
    peer('fanout engine only (no store; tsx)', process.execPath, ['--import', 'tsx', join(root, 'bench/peers/fanout-engine.ts'), origin.url1k, String(count), conc]),
    peer('global fetch loop', process.execPath, [join(root, 'bench/peers/fetch-loop.mjs'), origin.url1k, String(count), conc]),
  ];
  if (hasGevent) {
    others.push(peer(`gevent pool over requests (${BENCH.geventCount} URLs)`, python!, [join(root, 'bench/peers/gevent_pool.py'), origin.url1k, String(BENCH.geventCount), conc]));
  }
  const once = await alternate(1, others);
  const [full, undici, aiohttp] = compared as [Result, Result, Result | undefined];
  table(
    `a. throughput: ${count} x 1 KiB, concurrency ${conc}, bodies none, one core (${BENCH.rounds} alternating rounds of the first ${compared.length}; the rest once)`,
    [...compared, ...once],
    full,
    'job / loop s',
  );
  const vsUndici = full.processS / undici.processS;
  console.log(`\nfanout fetch process / bare undici loop process: ${vsUndici.toFixed(2)}x (job time / loop time: ${(full.innerS! / undici.innerS!).toFixed(2)}x)`);
  target(
    `a. fanout fetch process within ${BENCH.targets.vsUndici}x of the bare undici loop's`,
    `${vsUndici.toFixed(2)}x (${fmtS(full.processS)} s vs ${fmtS(undici.processS)} s)`,
    vsUndici <= BENCH.targets.vsUndici,
  );
  if (aiohttp) {
    const vsAiohttp = aiohttp.processS / full.processS;
    console.log(`aiohttp + gather process / fanout fetch process: ${vsAiohttp.toFixed(2)}x (loop time / job time: ${(aiohttp.innerS! / full.innerS!).toFixed(2)}x)`);
    target(
      `a. fanout fetch process >= ${BENCH.targets.vsAiohttp}x faster than aiohttp + gather's`,
      `${vsAiohttp.toFixed(2)}x (${fmtS(aiohttp.processS)} s vs ${fmtS(full.processS)} s)`,
      vsAiohttp >= BENCH.targets.vsAiohttp,
    );
  }
  report.throughput = [...compared, ...once];
}

/** (b) latency-bound: the job time and the process time against the ideal. */
async function latency(origin: Origins): Promise<void> {
  const ideal = (BENCH.latencyCount / BENCH.latencyConcurrency) * (BENCH.delayMs / 1000);
  const file = join(work, 'b.txt');
  urlList(file, origin.urlDelay, BENCH.latencyCount);
  const lc = String(BENCH.latencyConcurrency);
  const loop = join(root, 'bench/peers/undici-loop.mjs');
  const overflowsBefore = listenOverflows();
  const flags = ['--workers', '1', '--concurrency', lc, '--per-host', lc, '--bodies', 'none', '--chunk-size', '500'];
  // A worker opens at most FANOUT_MAX_SOCKETS sockets (default 256, for Lambda's 1,024 descriptors):
  // below the concurrency, it caps the requests in flight on one host. Measured both ways.
  const budget = { FANOUT_MAX_SOCKETS: lc };
  const loopArgs = [loop, origin.urlDelay, String(BENCH.latencyCount), lc];
  // Also as a user runs them: not pinned, so the client may use the origin's core too (the origin,
  // sleeping most of the time here, leaves most of it idle); both contestants alike.
  const rows = await alternate(BENCH.rounds, [
    fanoutFetch('fanout fetch', file, flags),
    fanoutFetch(`fanout fetch, FANOUT_MAX_SOCKETS=${lc}`, file, flags, true, budget),
    peer('bare undici.request loop', process.execPath, loopArgs),
    fanoutFetch('fanout fetch, not pinned', file, flags, false),
    peer('bare undici.request loop, not pinned', process.execPath, loopArgs, false),
  ]);
  // The Node origin the previous runs used, for comparison.
  const nodeOrigin =
    origin.urlDelay !== origin.urlDelayNode
      ? await alternate(1, [peer('bare undici.request loop, Node origin', process.execPath, [loop, origin.urlDelayNode, String(BENCH.latencyCount), lc])])
      : [];
  const [slow, slowBudget, slowUndici, free, freeUndici] = rows as [Result, Result, Result, Result, Result];
  const overflows = overflowsBefore === undefined ? undefined : listenOverflows()! - overflowsBefore;
  table(
    `b. latency-bound: ${BENCH.latencyCount} URLs x ${BENCH.delayMs} ms, concurrency ${lc} (ideal ${ideal.toFixed(1)} s; ${BENCH.rounds} alternating rounds)`,
    [...rows, ...nodeOrigin],
    slow,
    'job / loop s',
  );
  const vsIdeal = (r: Result, inner = true) => `${((inner ? r.innerS! : r.processS) / ideal).toFixed(2)}x`;
  console.log(
    `\nvs ideal, one core: fanout job ${vsIdeal(slow)}, process ${vsIdeal(slow, false)}; with FANOUT_MAX_SOCKETS=${lc}: job ${vsIdeal(slowBudget)}, process ${vsIdeal(slowBudget, false)}; bare loop ${vsIdeal(slowUndici)} (loop), ${vsIdeal(slowUndici, false)} (process)`,
  );
  console.log(`vs ideal, not pinned: fanout job ${vsIdeal(free)}, process ${vsIdeal(free, false)}; bare loop ${vsIdeal(freeUndici)} (loop), ${vsIdeal(freeUndici, false)} (process)`);
  if (overflows !== undefined) console.log(`listen queue overflows during the scenario (machine-wide, /proc/net/netstat): ${overflows}`);
  const limit = BENCH.targets.latencyVsIdeal;
  for (const [r, how] of [
    [slow, 'one core, defaults'],
    [slowBudget, `one core, FANOUT_MAX_SOCKETS=${lc}`],
    [free, 'not pinned, defaults'],
  ] as const) {
    target(`b. job time within ${limit}x of ideal (${how})`, `${(r.innerS! / ideal).toFixed(2)}x (${fmtS(r.innerS)} s)`, r.innerS! <= limit * ideal);
    target(`b. process time within ${limit}x of ideal (${how})`, `${(r.processS / ideal).toFixed(2)}x (${fmtS(r.processS)} s)`, r.processS <= limit * ideal);
  }
  report.latency = [...rows, ...nodeOrigin];
}

/** (c) scale: one long job, records written, pinned to one core. */
async function scale(origin: Origins): Promise<void> {
  const n = BENCH.scale;
  const file = join(work, 'c.txt');
  urlList(file, origin.url1k, n);
  const [big] = (await alternate(1, [fanoutFetch(`fanout fetch, ${n} URLs`, file, fetchFlags)])) as [Result];
  rmSync(file, { force: true });
  table(`c. scale: ${n} URLs end to end, records written, one core`, [big], big, 'job s');
  if (n === 1_000_000) {
    target(`c. 1,000,000 URLs in <= ${BENCH.targets.scaleSeconds} s`, `${big.innerS!.toFixed(1)} s job, ${big.processS.toFixed(1)} s process`, big.processS <= BENCH.targets.scaleSeconds);
    target(`c. peak RSS <= ${BENCH.targets.scaleRssMiB} MiB`, `${big.rssMiB?.toFixed(0)} MiB`, (big.rssMiB ?? Infinity) <= BENCH.targets.scaleRssMiB);
  }
  report.scale = [big];
}

/** (e) the Lambda bundles: size, and import time on Node 24 (Lambda's runtime) in a fresh process. */
async function lambdaBundles(): Promise<void> {
  const dist = mkdtempSync(join(root, '.tmp-dist-'));
  try {
    const bundles = await buildBundles(dist);
    console.log('\n### e. Lambda bundles (AWS SDK included)\n');
    console.log('| bundle | minified | import time on Node 24 (median of 5, fresh process) |');
    console.log('|---|---|---|');
    const rows: { name: string; bytes: number; importMs: number }[] = [];
    for (const b of bundles) {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const out = execFileSync(ensureNode24(), ['--input-type=module', '-e', `const t=performance.now();await import(${JSON.stringify(b.file)});console.log(performance.now()-t)`], {
          cwd: root,
          env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
        });
        times.push(Number(out.toString().trim()));
      }
      const importMs = median(times);
      rows.push({ name: b.name, bytes: b.bytes, importMs });
      console.log(`| ${b.name} | ${(b.bytes / 1024).toFixed(0)} KiB | ${importMs.toFixed(0)} ms |`);
      target(`e. ${b.name} bundle <= 1 MiB`, `${(b.bytes / 1024).toFixed(0)} KiB`, b.bytes <= BENCH.targets.bundleBytes);
      target(`e. ${b.name} bundle imports in <= ${BENCH.targets.bundleImportMs} ms`, `${importMs.toFixed(0)} ms`, importMs <= BENCH.targets.bundleImportMs);
    }
    report.bundles = rows;
  } finally {
    rmSync(dist, { recursive: true, force: true });
  }
}

await main();
