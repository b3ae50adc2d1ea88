/** The data folder's lock (functions/local/lock.ts), in-process. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../functions/core/errors.ts';
import { lockDataDir, lockHolder } from '../functions/local/lock.ts';
import { tempDir } from './support/tmp.ts';

const dir = tempDir();
const staleLock = (data: string, pid: number) =>
  writeFileSync(join(data, '.lock'), JSON.stringify({ pid, command: 'fanout fetch', host: hostname(), since: '2026-01-01T00:00:00.000Z' }));

describe('lockDataDir', () => {
  it('holds the folder with this pid; a second taker is refused with the holder named; release frees it', () => {
    const data = join(dir, 'a');
    const lock = lockDataDir(data, 'fanout serve');
    expect(JSON.parse(readFileSync(lock.path, 'utf8'))).toMatchObject({ pid: process.pid, command: 'fanout serve' });
    expect(lockHolder(data)).toMatchObject({ pid: process.pid });
    expect(() => lockDataDir(data, 'fanout fetch')).toThrow(UsageError);
    expect(() => lockDataDir(data, 'fanout fetch')).toThrow(`is in use by fanout serve (pid ${process.pid}`);
    lock.release();
    expect(lockHolder(data)).toBeNull();
    // Nothing was written: the folder this lock created goes with it.
    expect(existsSync(data)).toBe(false);
  });

  it('a full disk when taking the lock: an error naming the folder, with its ENOSPC code, and no lock file left behind', () => {
    const data = join(dir, 'full');
    mkdirSync(data);
    // Writes to /dev/full fail with ENOSPC: the lock's candidate file points there.
    symlinkSync('/dev/full', join(data, `.lock.${process.pid}`));
    let error: NodeJS.ErrnoException | undefined;
    try {
      lockDataDir(data, 'fanout fetch');
    } catch (e) {
      error = e as NodeJS.ErrnoException;
    }
    expect(error?.message).toBe(`the data folder ${data} is full (ENOSPC): free some space, or use another --data-dir`);
    expect(error?.code).toBe('ENOSPC');
    expect(readdirSync(data)).toEqual([]);
  });

  it('a holder killed a moment ago (a zombie its parent has not reaped yet) holds nothing', async () => {
    const data = join(dir, 'zombie');
    mkdirSync(data, { recursive: true });
    // The holder's parent is a Python process that never waits for its children: killed, the holder
    // stays a zombie until the parent ends. (A bash parent could reap it before it exec'd `sleep`,
    // which made this test fail now and then on a busy machine.)
    const script = [
      'import os, sys, time',
      'pid = os.fork()',
      "if pid == 0: os.execv(sys.argv[1], [sys.argv[1], '-e', 'setInterval(() => {}, 1000)'])",
      'print(pid, flush=True)',
      'time.sleep(5)',
    ].join('\n');
    const parent = spawn('python3', ['-c', script, process.execPath], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = Number(await new Promise<string>((r) => parent.stdout.once('data', (d) => r(String(d).trim()))));
    try {
      process.kill(pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 100));
      expect(readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(/\)\s+Z/);
      staleLock(data, pid);
      const lock = lockDataDir(data, 'fanout fetch');
      lock.release();
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('keeps a folder that holds data, and clears temporary files a killed process left', () => {
    const data = join(dir, 'b');
    mkdirSync(join(data, '.tmp'), { recursive: true });
    mkdirSync(join(data, 'jobs', 'x'), { recursive: true });
    writeFileSync(join(data, '.tmp', 'half'), 'x');
    const lock = lockDataDir(data, 'fanout fetch');
    expect(existsSync(join(data, '.tmp', 'half'))).toBe(false);
    lock.release();
    expect(existsSync(join(data, 'jobs', 'x'))).toBe(true);
  });

  it('removes job folders whose planning never finished, and keeps jobs', () => {
    const data = join(dir, 'plans');
    const orphan = '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e0f';
    const job = '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e10';
    const sliced = '01938f2e-6a2b-7c3d-9e4f-5a6b7c8d9e11';
    for (const id of [orphan, job, sliced]) mkdirSync(join(data, 'jobs', id, 'input'), { recursive: true });
    writeFileSync(join(data, 'jobs', orphan, 'input', '000000.ndjson.gz'), 'x');
    writeFileSync(join(data, 'jobs', job, 'job.json'), '{}');
    writeFileSync(join(data, 'jobs', sliced, 'planning.json'), '{}');
    lockDataDir(data, 'fanout fetch').release();
    expect(existsSync(join(data, 'jobs', orphan))).toBe(false);
    expect(existsSync(join(data, 'jobs', job, 'job.json'))).toBe(true);
    expect(existsSync(join(data, 'jobs', sliced, 'planning.json'))).toBe(true);
  });

  it('takes over the lock of a process that is gone', () => {
    const data = join(dir, 'c');
    mkdirSync(data);
    staleLock(data, spawnSync(process.execPath, ['-e', '']).pid!);
    expect(lockHolder(data)).toBeNull();
    lockDataDir(data, 'fanout fetch').release();
  });

  it('takes over a lock whose pid now belongs to another program', async () => {
    const data = join(dir, 'd');
    mkdirSync(data);
    const other = spawn('sleep', ['30']);
    try {
      staleLock(data, other.pid!);
      expect(lockHolder(data)).toBeNull();
      lockDataDir(data, 'fanout fetch').release();
    } finally {
      other.kill();
    }
  });
});
