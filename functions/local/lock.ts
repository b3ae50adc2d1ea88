/**
 * The data folder's lock: one process at a time runs jobs from a folder (`fanout serve`, `fetch`,
 * `resume`, a local `cancel` that finishes a job), or two would fetch the same chunks. The lock is
 * a file, DATA_DIR/.lock, created atomically (a hard link fails if it exists, like O_EXCL) and
 * holding the pid of its holder; it is stale, and taken over, once that process is gone.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { UsageError } from '../core/errors.ts';
import { isStoreFull } from '../core/store-errors.ts';
import { isJobId, layout } from '../core/layout.ts';
import { LocalStore } from './local-store.ts';

/** Lock defaults, stated once. */
export const LOCK_DEFAULTS = {
  /** Not a valid key segment (leading dot), so the store never lists it. */
  file: '.lock',
  /** Tries before giving up when a stale lock is taken over by someone else at the same moment. */
  attempts: 3,
} as const;

/** Who holds a data folder. */
export interface LockHolder {
  pid: number;
  command: string;
  host: string;
  since: string;
}

/** A lock this process holds. */
export interface DataDirLock {
  readonly path: string;
  /** Removes the lock, and the folders this process created that stayed empty. */
  release(): void;
}

function readHolder(path: string): LockHolder | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
  } catch {
    return null;
  }
}

/** Whether a process with this pid is running (on this host) and may be a fanout. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false; // EPERM: exists, owned by someone else
  }
  try {
    // A process killed a moment ago stays a zombie until its parent reaps it: it holds nothing.
    const state = /\)\s+(\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
    if (state === 'Z' || state === 'X') return false;
  } catch {
    // no /proc (macOS), or gone already: decided below
  }
  // A pid reused by an unrelated program (after a reboot, say) does not hold the folder.
  try {
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return command === '' || /node|fanout/i.test(command);
  } catch {
    return true; // no /proc (macOS): trust the pid
  }
}

/**
 * Removes the job folders a process killed while planning left behind: chunk inputs with no
 * job.json (written last) and no planning.json (a job planned in slices). Such a folder can never
 * run, and nobody is planning while we hold the lock.
 */
function removeUnfinishedPlans(root: string): void {
  const jobs = join(root, 'jobs');
  let names: string[];
  try {
    names = readdirSync(jobs);
  } catch {
    return; // no jobs yet
  }
  for (const name of names) {
    if (!isJobId(name)) continue;
    const folder = join(jobs, name);
    if (existsSync(join(root, layout.job(name))) || existsSync(join(root, layout.planning(name)))) continue;
    rmSync(folder, { recursive: true, force: true });
  }
}

/**
 * Who holds the data folder now, or null when nobody does (no lock, or a stale one).
 *
 * @example
 * const holder = lockHolder('./fanout-data'); // { pid: 4242, command: 'fanout serve', ... } or null
 */
export function lockHolder(dataDir: string): LockHolder | null {
  const holder = readHolder(join(resolve(dataDir), LOCK_DEFAULTS.file));
  if (!holder || typeof holder.pid !== 'number') return null;
  if (holder.host === hostname() && !alive(holder.pid)) return null;
  return holder;
}

/** The message for a folder in use, naming its holder. */
export function lockedMessage(dataDir: string, holder: LockHolder): string {
  return (
    `the data folder ${dataDir} is in use by ${holder.command} (pid ${holder.pid}${holder.host === hostname() ? '' : ` on ${holder.host}`}, ` +
    `since ${holder.since}): stop it or use another --data-dir (if no such process runs, remove ${join(dataDir, LOCK_DEFAULTS.file)})`
  );
}

/**
 * Takes the data folder's lock (creating the folder if needed) and removes what a killed process
 * left: temporary files in DATA_DIR/.tmp and job folders whose planning never finished. Nobody else
 * writes there while we hold the lock.
 *
 * @throws {UsageError} (exit 2) naming the holder when another live process holds it.
 * @example
 * const lock = lockDataDir('./fanout-data', 'fanout fetch');
 * try { ... } finally { lock.release(); }
 */
export function lockDataDir(dataDir: string, command: string): DataDirLock {
  const root = resolve(dataDir);
  const path = join(root, LOCK_DEFAULTS.file);
  const existed = existsSync(root);
  mkdirSync(root, { recursive: true });
  const me: LockHolder = { pid: process.pid, command, host: hostname(), since: new Date().toISOString() };
  const candidate = `${path}.${process.pid}`;
  try {
    writeFileSync(candidate, JSON.stringify(me) + '\n');
  } catch (error) {
    // A full disk, say: no half-written lock file, and no folder this run made.
    try {
      unlinkSync(candidate);
    } catch {
      // never made
    }
    if (!existed) rmSync(root, { recursive: true, force: true });
    if (!isStoreFull(error)) throw error;
    const { code } = error as NodeJS.ErrnoException;
    throw Object.assign(new Error(`the data folder ${dataDir} is full (${code}): free some space, or use another --data-dir`), { code });
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(candidate, path); // atomic: fails if a lock exists
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = lockHolder(dataDir);
      if (holder) throw new UsageError(lockedMessage(dataDir, holder));
      if (attempt >= LOCK_DEFAULTS.attempts) throw new UsageError(`cannot lock the data folder ${dataDir}: ${path} keeps coming back`);
      // Stale: its process is gone. Remove it and try again.
      try {
        unlinkSync(path);
      } catch {
        // someone else removed it first
      }
    }
  } finally {
    try {
      unlinkSync(candidate);
    } catch {
      // already gone
    }
  }
  LocalStore.removeTemporaryFiles(root);
  removeUnfinishedPlans(root);

  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    if (readHolder(path)?.pid === process.pid) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
    // A run that created nothing (bad input) leaves nothing: empty folders go, the data folder too
    // when this process made it.
    for (const dir of [join(root, '.tmp'), join(root, 'jobs'), ...(existed ? [] : [root])]) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty, or not there
      }
    }
  };
  process.on('exit', release);
  return { path, release };
}
