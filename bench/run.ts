/**
 * `npm run bench`: fanout against its peers, measured side by side in one run on this machine.
 *
 * The origin (nginx when installed, else a Node server) is pinned to the last core and every
 * client to core 0 with taskset, so each client gets one core. Scenarios:
 *   a. throughput: 40,000 x 1 KiB, concurrency 100, bodies none
 *   b. latency-bound: 5,000 URLs that each take 100 ms, concurrency 500 (ideal 1.0 s)
 *   c. scale: 1,000,000 URLs end to end with records written (BENCH_SCALE to change the count)
 *   d. cores: `fanout fetch --workers 2` (threads, unpinned) against `--workers 1`
 *   e. the Lambda bundles: size and import time on Node 24
 * Each target is printed with whether it is met. BENCH_QUICK=1 runs smaller counts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Socket, createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundles } from '../scripts/build.ts';
import { ensureNode24 } from '../test/support/node24.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const quick = process.env.BENCH_QUICK === '1';
const work = mkdtempSync(join(tmpdir(), 'fanout-bench-'));
chmodSync(work, 0o755); // nginx's workers run as an unprivileged user and must read its files
const cores = availableParallelism();
const clientCore = '0';
const originCore = String(cores - 1);
const hasTaskset = existsSync('/usr/bin/taskset');
const nginxBin = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(existsSync);
const python = ['/usr/bin/python3'].find((p) => existsSync(p));

interface Measured {
  name: string;
  requests: number;
  seconds: number;
  ok: number;
  note?: string;
  rssMiB?: number;
}

function pinned(core: string, cmd: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', core, cmd, ...args]] : [cmd, args];
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
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

interface OriginProcess {
  url1k: string;
  urlDelay: (ms: number) => string;
  kind: string;
  stop(): void;
}

/** nginx (static 1 KiB file) when installed, and a Node origin for delayed answers. */
async function startOrigins(): Promise<OriginProcess> {
  const nodePort = await freePort();
  const nodeOrigin = spawn(...pinned(originCore, process.execPath, ['--import', 'tsx', join(root, 'bench/origin-server.ts'), String(nodePort)]), {
    cwd: root,
    stdio: 'ignore',
  });
  await waitForPort(nodePort);
  let nginx: ReturnType<typeof spawn> | undefined;
  let url1k = `http://127.0.0.1:${nodePort}/1k`;
  let kind = 'node http server';
  if (nginxBin) {
    const dir = join(work, 'nginx');
    mkdirSync(join(dir, 'html'), { recursive: true });
    writeFileSync(join(dir, 'html', '1k'), 'x'.repeat(1024));
    const port = await freePort();
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 120s; default_type text/plain;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}; root ${dir}/html; } }`,
    );
    nginx = spawn(...pinned(originCore, nginxBin, ['-c', join(dir, 'nginx.conf'), '-p', dir]), { stdio: 'ignore' });
    await waitForPort(port);
    url1k = `http://127.0.0.1:${port}/1k`;
    kind = 'nginx';
  }
  return {
    url1k,
    urlDelay: (ms) => `http://127.0.0.1:${nodePort}/delay/${ms}`,
    kind,
    stop() {
      nodeOrigin.kill();
      nginx?.kill('SIGQUIT');
    },
  };
}

async function peer(name: string, cmd: string, args: string[]): Promise<Measured | undefined> {
  const out = await run(...pinned(clientCore, cmd, args));
  if (out.code !== 0) {
    console.error(`  ${name}: failed (${out.stderr.trim().split('\n').at(-1)})`);
    return undefined;
  }
  const json = JSON.parse(out.stdout.trim().split('\n').at(-1)!);
  return { name, requests: json.requests, seconds: json.seconds, ok: json.ok };
}

function urlList(file: string, base: string, count: number): void {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`${base}?i=${i}`);
  writeFileSync(file, lines.join('\n') + '\n');
}

/** The full `fanout fetch`: records written, manifest, everything; job time from its own status. */
async function fanoutFetch(name: string, file: string, flags: string[], pin = true): Promise<Measured> {
  const dataDir = mkdtempSync(join(work, 'data-'));
  const args = [join(root, 'bin/fanout.mjs'), 'fetch', file, '--json', '--no-progress', '--data-dir', dataDir, '--retries', '0', ...flags];
  const timed = existsSync('/usr/bin/time') ? ['/usr/bin/time', ['-f', 'TIME %e %M', process.execPath, ...args]] : [process.execPath, args];
  const out = pin ? await run(...pinned(clientCore, timed[0] as string, timed[1] as string[])) : await run(timed[0] as string, timed[1] as string[]);
  if (out.code !== 0) throw new Error(`fanout fetch failed: ${out.stderr}`);
  const status = JSON.parse(out.stdout);
  const time = /TIME ([\d.]+) (\d+)/.exec(out.stderr);
  const jobSeconds = (Date.parse(status.finishedAt) - Date.parse(status.createdAt)) / 1000;
  rmSync(dataDir, { recursive: true, force: true });
  return {
    name,
    requests: status.total,
    seconds: jobSeconds,
    ok: status.succeeded,
    rssMiB: time ? Number(time[2]) / 1024 : undefined,
    note: time ? `process ${Number(time[1]).toFixed(1)} s incl. start-up` : undefined,
  };
}

function table(title: string, rows: Measured[], reference?: Measured): void {
  console.log(`\n### ${title}\n`);
  console.log('| client | requests | ok | seconds | req/s | vs fanout fetch | notes |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const rate = r.requests / r.seconds;
    const ratio = reference ? (reference.requests / reference.seconds / rate).toFixed(2) + 'x' : '';
    const notes = [r.note, r.rssMiB ? `peak RSS ${r.rssMiB.toFixed(0)} MiB` : ''].filter(Boolean).join('; ');
    console.log(`| ${r.name} | ${r.requests} | ${r.ok} | ${r.seconds.toFixed(2)} | ${Math.round(rate)} | ${r === reference ? '1.00x' : ratio} | ${notes} |`);
  }
}

const targets: { name: string; value: string; met: boolean }[] = [];
function target(name: string, value: string, met: boolean): void {
  targets.push({ name, value, met });
}

async function main(): Promise<void> {
  console.log(`# fanout bench (${new Date().toISOString()})`);
  console.log(`machine: ${cores} cores, ${process.version}; clients on core ${clientCore}, origin on core ${originCore}${hasTaskset ? '' : ' (no taskset: not pinned)'}`);
  const origin = await startOrigins();
  console.log(`origin: ${origin.kind} for 1 KiB answers; a Node server for delayed answers`);
  try {
    // (a) throughput
    const count = quick ? 10_000 : 40_000;
    const file = join(work, 'a.txt');
    urlList(file, origin.url1k, count);
    const engine = join(root, 'bench/peers/fanout-engine.ts');
    const rows: (Measured | undefined)[] = [];
    const full = await fanoutFetch('fanout fetch (records written)', file, ['--workers', '1', '--concurrency', '100', '--per-host', '100', '--bodies', 'none', '--chunk-size', '1000']);
    rows.push(full);
    rows.push(await peer('fanout engine only (no store)', process.execPath, ['--import', 'tsx', engine, origin.url1k, String(count), '100']));
    rows.push(await peer('bare undici.request loop', process.execPath, [join(root, 'bench/peers/undici-loop.mjs'), origin.url1k, String(count), '100']));
    rows.push(await peer('global fetch loop', process.execPath, [join(root, 'bench/peers/fetch-loop.mjs'), origin.url1k, String(count), '100']));
    const hasAiohttp = python && (await run(python, ['-c', 'import aiohttp'])).code === 0;
    const hasGevent = python && (await run(python, ['-c', 'import gevent, requests'])).code === 0;
    const aiohttp = hasAiohttp ? await peer('aiohttp + asyncio.gather', python!, [join(root, 'bench/peers/aiohttp_gather.py'), origin.url1k, String(count), '100']) : undefined;
    rows.push(aiohttp);
    if (hasGevent) rows.push(await peer('gevent pool over requests', python!, [join(root, 'bench/peers/gevent_pool.py'), origin.url1k, String(Math.min(count, 20_000)), '100']));
    if (!hasAiohttp || !hasGevent) console.log('(python3-aiohttp / python3-gevent / python3-requests not installed: those peers skipped)');
    table(`a. throughput: ${count} x 1 KiB, concurrency 100, bodies none`, rows.filter(Boolean) as Measured[], full);
    const undici = rows.find((r) => r?.name.startsWith('bare undici'));
    const rate = (m: Measured) => m.requests / m.seconds;
    if (aiohttp) target('a. fanout fetch >= 3x aiohttp + asyncio.gather', `${(rate(full) / rate(aiohttp)).toFixed(2)}x`, rate(full) >= 3 * rate(aiohttp));
    if (undici) target('a. fanout fetch >= 0.75x bare undici loop', `${(rate(full) / rate(undici)).toFixed(2)}x`, rate(full) >= 0.75 * rate(undici));

    // (b) latency-bound
    const slowFile = join(work, 'b.txt');
    urlList(slowFile, origin.urlDelay(100), 5_000);
    const slow = await fanoutFetch('fanout fetch', slowFile, ['--workers', '1', '--concurrency', '500', '--per-host', '500', '--bodies', 'none', '--chunk-size', '500']);
    const slowUndici = await peer('bare undici.request loop', process.execPath, [join(root, 'bench/peers/undici-loop.mjs'), origin.urlDelay(100), '5000', '500']);
    table('b. latency-bound: 5,000 URLs x 100 ms, concurrency 500 (ideal 1.0 s)', [slow, slowUndici].filter(Boolean) as Measured[], slow);
    target('b. job time <= 1.25x ideal (1.25 s)', `${slow.seconds.toFixed(2)} s = ${slow.seconds.toFixed(2)}x ideal`, slow.seconds <= 1.25);

    // (c) scale
    const scale = Number(process.env.BENCH_SCALE ?? (quick ? 100_000 : 1_000_000));
    const bigFile = join(work, 'c.txt');
    urlList(bigFile, origin.url1k, scale);
    const big = await fanoutFetch(`fanout fetch, ${scale} URLs`, bigFile, ['--workers', '1', '--concurrency', '100', '--per-host', '100', '--bodies', 'none', '--chunk-size', '1000']);
    table(`c. scale: ${scale} URLs end to end, records written`, [big], big);
    if (scale === 1_000_000) {
      target('c. 1,000,000 URLs in <= 120 s', `${big.seconds.toFixed(1)} s`, big.seconds <= 120);
      target('c. peak RSS <= 512 MiB', `${big.rssMiB?.toFixed(0)} MiB`, (big.rssMiB ?? Infinity) <= 512);
    }

    // (d) cores: the same job on one worker (this thread) and on a worker thread per core. Not
    // pinned: the threads need the cores; on this machine the origin shares them.
    const flagsD = ['--concurrency', '100', '--per-host', '100', '--bodies', 'none', '--chunk-size', '1000'];
    const one = await fanoutFetch('fanout fetch --workers 1', file, ['--workers', '1', ...flagsD], false);
    const all = await fanoutFetch(`fanout fetch --workers ${cores} (threads)`, file, ['--workers', String(cores), ...flagsD], false);
    table(`d. cores: ${count} x 1 KiB, one worker against ${cores} worker threads (origin on the same ${cores} cores)`, [one, all], one);
  } finally {
    origin.stop();
  }

  // (d) bundles
  const dist = mkdtempSync(join(root, '.tmp-dist-'));
  try {
    const bundles = await buildBundles(dist);
    console.log('\n### e. Lambda bundles\n');
    console.log('| bundle | minified | import time on Node 24 (median of 5, fresh process) |');
    console.log('|---|---|---|');
    for (const b of bundles) {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const out = execFileSync(ensureNode24(), ['--input-type=module', '-e', `const t=performance.now();await import(${JSON.stringify(b.file)});console.log(performance.now()-t)`], { cwd: root, env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } });
        times.push(Number(out.toString().trim()));
      }
      const median = times.sort((x, y) => x - y)[2]!;
      console.log(`| ${b.name} | ${(b.bytes / 1024).toFixed(0)} KiB | ${median.toFixed(0)} ms |`);
      target(`e. ${b.name} bundle <= 1 MiB`, `${(b.bytes / 1024).toFixed(0)} KiB`, b.bytes <= 1024 * 1024);
      target(`e. ${b.name} bundle imports in <= 150 ms`, `${median.toFixed(0)} ms`, median <= 150);
    }
  } finally {
    rmSync(dist, { recursive: true, force: true });
  }

  console.log('\n### targets\n');
  for (const t of targets) console.log(`- ${t.met ? 'MET    ' : 'NOT MET'} ${t.name}: ${t.value}`);
  rmSync(work, { recursive: true, force: true });
}

await main();
