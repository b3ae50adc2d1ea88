/**
 * Runs the real `fanout` CLI in child processes, as a user would: the bundle scripts/build-cli.ts
 * makes, built from the current sources once per test file into a temporary folder (so it is never
 * stale, starts in milliseconds, and proves the bundle needs nothing beside it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCli } from '../../scripts/build-cli.ts';

/** The CLI from its TypeScript sources through tsx (see source-cli.mjs), for a synchronous path. */
export const BIN = fileURLToPath(new URL('./source-cli.mjs', import.meta.url));

let built: Promise<string> | undefined;

/** The built CLI's entry file (built on first use). */
export function cliBin(): Promise<string> {
  built ??= (async () => {
    const outdir = mkdtempSync(join(tmpdir(), 'fanout-cli-build-'));
    process.once('exit', () => rmSync(outdir, { recursive: true, force: true }));
    await buildCli(outdir);
    return join(outdir, 'fanout.mjs');
  })();
  return built;
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, its output captured. */
export function runCommand(command: string, args: string[], options: { stdin?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

export async function fanout(args: string[], options: { stdin?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<Run> {
  const bin = await cliBin();
  return runCommand(process.execPath, [bin, ...args], {
    cwd: options.cwd,
    stdin: options.stdin,
    env: { ...process.env, FANOUT_DATA_DIR: '', FANOUT_TOKEN: '', FANOUT_API: '', ...options.env },
  });
}

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `fanout serve --port 0 ...` and resolves with the URL it printed. */
export async function startServe(
  args: string[],
  env: Record<string, string> = {},
  options: { bin?: string; cwd?: string } = {},
): Promise<ServeProcess> {
  const bin = options.bin ?? (await cliBin());
  return new Promise((resolve, reject) => {
    const child = spawn(bin.endsWith('.mjs') ? process.execPath : bin, [...(bin.endsWith('.mjs') ? [bin] : []), 'serve', '--port', '0', ...args], {
      cwd: options.cwd,
      env: { ...process.env, FANOUT_DATA_DIR: '', FANOUT_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const onData = (d: Buffer) => {
      output += d;
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        resolve({
          url: match[1]!,
          child,
          output: () => output,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (output += d));
    child.once('exit', (code) => reject(new Error(`fanout serve exited with ${code}: ${output}`)));
  });
}

export interface LiveRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited. */
  done: Promise<Run>;
}

/** Starts `fanout ARGS` and hands back the process, to signal it mid-run. */
export async function spawnFanout(args: string[], options: { env?: Record<string, string>; cwd?: string; bin?: string } = {}): Promise<LiveRun> {
  const child = spawn(process.execPath, [options.bin ?? (await cliBin()), ...args], {
    cwd: options.cwd,
    env: { ...process.env, FANOUT_DATA_DIR: '', FANOUT_TOKEN: '', FANOUT_API: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? -1 : null), stdout, stderr }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, done };
}

/** Polls `check` until it is true (or fails after `ms`). */
export async function until(check: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
