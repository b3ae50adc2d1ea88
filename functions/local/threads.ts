/**
 * Worker threads for the embedded runtime, so a job uses every core: each thread fetches and writes
 * its own chunks (its own connection pools, its own per-job concurrency), exactly as separate Lambdas
 * would, against the main thread's in-process queue through a small message protocol. The store is
 * the same folder: its writes are atomic across threads. A thread that dies leaves its deliveries to
 * be made visible again and redelivered, as SQS does for a crashed consumer.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type MessagePort } from 'node:worker_threads';
import type { GuardConfig } from '../core/engine/guard.ts';
import type { Counts } from '../core/counts.ts';
import type { ProxyRoutes } from '../core/engine/proxy.ts';
import type { Queue, ReceivedMessage, SendOptions } from '../core/ports.ts';
import type { FetchRecord } from '../core/record.ts';

/** What the main thread tells a worker thread when it starts. */
export interface ThreadConfig {
  dataDir: string;
  guard: GuardConfig;
  /** Proxies from the environment (`fanout fetch`), as the main thread read them. */
  envProxy?: ProxyRoutes | null;
  /** See RuntimeOptions.proxyAuthFor. */
  proxyAuthFor?: readonly string[];
  maxReceiveCount: number;
  visibilityTimeoutMs: number;
  maxChunksInFlight?: number;
  retryDelayMs?: number;
  /** Signs completion callbacks (threads deliver them like any message). */
  callbackSecret?: string;
  callbackRetryBaseMs?: number;
  /** See WorkerDeps.partEveryMs. */
  partEveryMs?: number;
  /** The thread's socket budget (its share of the process's descriptors; see descriptors.ts). */
  maxSockets: number;
}

/** Messages from a worker thread. */
export type FromThread =
  | { type: 'call'; id: number; op: 'receive'; max: number; waitMs: number }
  | { type: 'call'; id: number; op: 'delete'; receipt: string }
  | { type: 'call'; id: number; op: 'changeVisibility'; receipt: string; ms: number }
  | { type: 'call'; id: number; op: 'send'; bodies: string[]; delayMs?: number }
  | { type: 'progress'; jobId: string; done: number; failed: number }
  /** A chunk's counts, for the main thread's ledger (which finishes the job after the last). */
  | { type: 'chunk-done'; jobId: string; chunk: number; counts: Counts; lost?: boolean }
  | { type: 'callback'; jobId: string; record: FetchRecord }
  | { type: 'error'; context: string; message: string }
  | { type: 'stopped' };

/** Messages to a worker thread. */
export type ToThread =
  | { type: 'reply'; id: number; result?: unknown; error?: string }
  | { type: 'cancel'; jobId: string }
  | { type: 'stop' };

/** The worker thread's side of the queue: every call goes to the main thread's queue. */
export class QueueProxy implements Queue {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(
    private readonly port: MessagePort,
    readonly maxReceiveCount: number,
    readonly visibilityTimeoutMs: number,
  ) {}

  /** Routes a reply from the main thread to its call. */
  settle(reply: Extract<ToThread, { type: 'reply' }>): void {
    const call = this.pending.get(reply.id);
    if (!call) return;
    this.pending.delete(reply.id);
    if (reply.error !== undefined) call.reject(new Error(reply.error));
    else call.resolve(reply.result);
  }

  private call<T>(message: Record<string, unknown> & { op: string }): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.port.postMessage({ type: 'call', id, ...message });
    });
  }

  send(bodies: string[], options: SendOptions = {}): Promise<void> {
    return this.call({ op: 'send', bodies, delayMs: options.delayMs });
  }

  async receive({ max, waitMs = 0, signal }: { max: number; waitMs?: number; signal?: AbortSignal }): Promise<ReceivedMessage[]> {
    if (signal?.aborted) return [];
    return this.call({ op: 'receive', max, waitMs });
  }

  delete(receipt: string): Promise<void> {
    return this.call({ op: 'delete', receipt });
  }

  changeVisibility(receipt: string, ms: number): Promise<void> {
    return this.call({ op: 'changeVisibility', receipt, ms });
  }
}

let threadScript: Promise<string> | undefined;

/**
 * The worker threads' code as a plain JavaScript file. In the built CLI it is
 * build/cli/thread-worker.mjs, made by scripts/build-cli.ts beside the code running now: nothing is
 * compiled at run time. Running from the TypeScript sources (tests, development), it is bundled
 * once per process with esbuild, a development dependency: Node 20 does not give worker threads the
 * main thread's TypeScript loader, and the bundle is always the current code.
 *
 * @example
 * new Worker(await threadBundle(), { workerData: config });
 */
export function threadBundle(): Promise<string> {
  if (!import.meta.url.endsWith('.ts')) {
    threadScript ??= Promise.resolve(fileURLToPath(new URL('./thread-worker.mjs', import.meta.url)));
    return threadScript;
  }
  threadScript ??= (async () => {
    const { build } = await import('esbuild');
    const outfile = join(tmpdir(), `fanout-thread-${process.pid}-${Date.now()}.mjs`);
    await build({
      entryPoints: [fileURLToPath(new URL('./thread-worker.ts', import.meta.url))],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      mainFields: ['module', 'main'],
      banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
      logLevel: 'silent',
    });
    process.once('exit', () => rmSync(outfile, { force: true }));
    return outfile;
  })();
  return threadScript;
}

export interface ThreadHandlers {
  onProgress(jobId: string, done: number, failed: number): void;
  onChunkDone(jobId: string, chunk: number, counts: Counts, lost: boolean): void;
  onCallback(jobId: string, record: FetchRecord): void;
  onError(error: Error, context: string): void;
}

/** The CPU profiler's flags among `argv` (with the values of those that take one). */
export function profilerFlags(argv: readonly string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (!flag.startsWith('--cpu-prof')) continue;
    flags.push(flag);
    if (/^--cpu-prof-(dir|name|interval)$/.test(flag) && i + 1 < argv.length) flags.push(argv[++i]!);
  }
  return flags;
}

/** A worker thread as the main thread sees it: it serves the thread's queue calls. */
export class WorkerThread {
  readonly worker: Worker;
  /** Deliveries handed to this thread and not yet deleted: made visible again if it dies. */
  private readonly receipts = new Set<string>();
  private stopped: Promise<void> | undefined;
  private exited = false;
  /** Ends a receive that long-polls an empty queue when the thread is asked to stop (else stop waits up to a poll, 1 s). */
  private readonly stopping = new AbortController();

  constructor(
    script: string,
    config: ThreadConfig,
    private readonly queue: Queue,
    private readonly handlers: ThreadHandlers,
  ) {
    this.worker = new Worker(script, {
      workerData: config,
      // Only the profiler's flags are passed on: `node --cpu-prof fanout.mjs fetch ...` profiles the
      // fetching threads too (docs/performance.md); other flags are the main thread's.
      execArgv: profilerFlags(process.execArgv),
      // A young generation larger than V8's default cuts garbage-collection time on the hot path by
      // about a third; 64 MB keeps a 2-thread million-URL job near 512 MiB (docs/performance.md).
      resourceLimits: { maxYoungGenerationSizeMb: 64 },
    });
    this.worker.on('message', (message: FromThread) => void this.onMessage(message));
    this.worker.on('error', (error) => this.handlers.onError(error, 'worker thread'));
    this.worker.on('exit', () => void this.onExit());
  }

  private async onMessage(message: FromThread): Promise<void> {
    if (message.type === 'progress') return this.handlers.onProgress(message.jobId, message.done, message.failed);
    if (message.type === 'chunk-done') return this.handlers.onChunkDone(message.jobId, message.chunk, message.counts, message.lost ?? false);
    if (message.type === 'callback') return this.handlers.onCallback(message.jobId, message.record);
    if (message.type === 'error') return this.handlers.onError(new Error(message.message), message.context);
    if (message.type !== 'call') return;
    try {
      let result: unknown;
      if (message.op === 'receive') {
        const got = await this.queue.receive({ max: message.max, waitMs: message.waitMs, signal: this.stopping.signal });
        if (this.exited) {
          // The thread died while this receive waited: nobody will process these.
          for (const m of got) await this.queue.changeVisibility(m.receipt, 0);
          return;
        }
        for (const m of got) this.receipts.add(m.receipt);
        result = got;
      } else if (message.op === 'delete') {
        await this.queue.delete(message.receipt);
        this.receipts.delete(message.receipt);
      } else if (message.op === 'changeVisibility') {
        await this.queue.changeVisibility(message.receipt, message.ms);
      } else {
        await this.queue.send(message.bodies, { delayMs: message.delayMs });
      }
      if (!this.exited) this.worker.postMessage({ type: 'reply', id: message.id, result } satisfies ToThread);
    } catch (error) {
      if (!this.exited) this.worker.postMessage({ type: 'reply', id: message.id, error: (error as Error).message } satisfies ToThread);
    }
  }

  private async onExit(): Promise<void> {
    this.exited = true;
    // A dead consumer's deliveries come back at once rather than after the visibility timeout.
    for (const receipt of this.receipts) await this.queue.changeVisibility(receipt, 0);
    this.receipts.clear();
  }

  cancel(jobId: string): void {
    if (!this.exited) this.worker.postMessage({ type: 'cancel', jobId } satisfies ToThread);
  }

  /** Asks the thread to finish the chunks in hand and stop. */
  stop(): Promise<void> {
    if (this.exited) return Promise.resolve();
    this.stopped ??= new Promise<void>((resolve) => {
      this.worker.once('exit', () => resolve());
      this.worker.postMessage({ type: 'stop' } satisfies ToThread);
      this.stopping.abort(); // after 'stop', so the thread reads it before the empty answer
    });
    return this.stopped;
  }
}
