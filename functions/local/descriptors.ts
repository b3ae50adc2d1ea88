/**
 * The embedded runtime's socket budget per worker, sized to the process's descriptor limit: a
 * container with a low limit (`ulimit -n 256`) must not let sockets take the descriptors the store
 * needs to write what they fetched (before, 508 origins at concurrency 200 under that limit ended
 * with every record `chunk_failed`: EMFILE opening the result files).
 */
import { readFileSync } from 'node:fs';
import { AGENT_DEFAULTS } from '../core/engine/agent.ts';

/** Descriptor defaults, stated once. */
export const DESCRIPTOR_DEFAULTS = {
  /**
   * Descriptors kept out of the socket budgets: stdio, epoll, libuv's pipes, the lock, and the files
   * the store has open at once (chunk inputs, part and result files, summaries).
   */
  reserve: 128,
  /** The least budget a worker gets, however low the limit. */
  minSockets: 8,
} as const;

/**
 * The process's limit on open descriptors (Linux: /proc/self/limits; Node raises the soft limit to
 * the hard one at start), or undefined where it cannot be read.
 *
 * @example
 * descriptorLimit(() => 'Max open files            256                  256                  files') // 256
 */
export function descriptorLimit(limits: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(limits())?.[1];
    return soft === undefined ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

/**
 * A worker's socket budget: AGENT_DEFAULTS.localMaxSockets, or its share of the descriptors when
 * those are fewer.
 *
 * @example
 * localMaxSockets(2, 1024) // 448: (1,024 - 128 reserved) / 2 workers
 */
export function localMaxSockets(workers: number, limit: number | undefined = descriptorLimit()): number {
  const share = limit === undefined ? Infinity : Math.floor((limit - DESCRIPTOR_DEFAULTS.reserve) / Math.max(1, workers));
  return Math.max(DESCRIPTOR_DEFAULTS.minSockets, Math.min(AGENT_DEFAULTS.localMaxSockets, share));
}
