/**
 * The two clients of the differential test, each fetching a whole list once: curl (one process,
 * `--parallel`, one body file per URL, `%{json}` and `%{header_json}` per transfer) and the real
 * fanout CLI (`fanout fetch --out records.ndjson`), with the same limits and no retries.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fanout } from './cli.ts';
import { requireBinary } from './real-servers.ts';

/** The limits both clients get. */
export interface Limits {
  timeoutMs: number;
  maxRedirects: number;
}

export interface CurlResult {
  exitcode: number;
  errormsg: string | null;
  /** 0 when no response came. */
  status: number;
  finalUrl: string;
  redirects: number;
  contentType: string | null;
  /** Headers of the last response, lower-cased names, each a list of values. */
  headers: Record<string, string[]>;
  /** The body, content-decoded (--compressed). */
  body: Buffer;
}

export interface FanoutRecord {
  index: number;
  url: string;
  ok: boolean;
  status: number | null;
  finalUrl: string | null;
  redirects: number;
  headers: Record<string, string | string[]>;
  bytes: number;
  truncated: boolean;
  body?: string;
  bodyEncoding?: 'utf8' | 'base64';
  sha256?: string | null;
  error: { code: string; message: string } | null;
}

export function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** One curl process fetching the whole list in parallel, each body to its own file. */
export async function curlAll(urls: string[], dir: string, { timeoutMs, maxRedirects }: Limits): Promise<CurlResult[]> {
  const curl = requireBinary('curl', 'curl');
  mkdirSync(join(dir, 'curl'));
  const quote = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const config = urls.map((url, i) => `url = ${quote(url)}\noutput = ${quote(join(dir, 'curl', String(i)))}\n`).join('');
  writeFileSync(join(dir, 'curl.config'), config);
  const { stdout } = await run(curl, [
    '--silent', '--noproxy', '*', '--parallel', '--parallel-max', '16', '--location', '--max-redirs', String(maxRedirects), '--compressed',
    '--max-time', String(timeoutMs / 1000), '--write-out', '\u0001%{json}\u0002%{header_json}\u0003', '--config', join(dir, 'curl.config'),
  ]);
  const results: CurlResult[] = [];
  for (const m of stdout.matchAll(/\u0001(.*?)\u0002(.*?)\u0003/gs)) {
    const info = JSON.parse(m[1]!) as Record<string, unknown>;
    const headers = JSON.parse(m[2]!) as Record<string, string[]>;
    const i = info.urlnum as number;
    const file = join(dir, 'curl', String(i));
    results[i] = {
      exitcode: info.exitcode as number,
      errormsg: (info.errormsg as string | null) ?? null,
      status: info.http_code as number,
      finalUrl: info.url_effective as string,
      redirects: info.num_redirects as number,
      contentType: (info.content_type as string | null) ?? null,
      headers,
      body: existsSync(file) ? readFileSync(file) : Buffer.alloc(0),
    };
  }
  return results;
}

/** Loopback servers are reached directly, whatever proxy the environment names (curl: --noproxy '*'). */
const NO_PROXY_ENV = { HTTP_PROXY: '', HTTPS_PROXY: '', ALL_PROXY: '', http_proxy: '', https_proxy: '', all_proxy: '', NO_PROXY: '*', no_proxy: '*' };

export async function fanoutAll(urls: string[], dir: string, { timeoutMs, maxRedirects }: Limits): Promise<FanoutRecord[]> {
  writeFileSync(join(dir, 'list.txt'), urls.join('\n') + '\n');
  const out = join(dir, 'records.ndjson');
  const result = await fanout([
    'fetch', join(dir, 'list.txt'), '--out', out, '--no-progress', '--data-dir', join(dir, 'data'), '--workers', '1',
    '--concurrency', '16', '--retries', '0', '--timeout-ms', String(timeoutMs), '--max-redirects', String(maxRedirects),
  ], { env: NO_PROXY_ENV });
  if (result.code !== 0) throw new Error(`fanout fetch exited with ${result.code}: ${result.stderr}`);
  return readFileSync(out, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as FanoutRecord);
}
