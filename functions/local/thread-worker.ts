/**
 * The worker thread's entry point: a worker loop over the shared folder store and the main thread's
 * queue (see threads.ts). Progress is reported in batches; a finished chunk's counts go to the main
 * thread, whose ledger counts them and finishes the job after the last one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CancelRegistry } from '../core/cancel.ts';
import { preloadBodyText } from '../core/engine/body-text-loader.ts';
import { Fetcher } from '../core/engine/fetcher.ts';
import { AddressGuard } from '../core/engine/guard.ts';
import type { Ledger } from '../core/ledger.ts';
import type { MessageDeps } from '../core/messages.ts';
import { LocalStore } from './local-store.ts';
import type { FromThread, ThreadConfig, ToThread } from './threads.ts';
import { QueueProxy } from './threads.ts';
import { WorkerLoop } from './worker-loop.ts';

/** How often the thread reports progress. */
const PROGRESS_EVERY_MS = 100;

// A thread lives as long as its runtime (`serve`: days): see preloadBodyText.
preloadBodyText();

const port = parentPort!;
const config = workerData as ThreadConfig;
const post = (message: FromThread) => port.postMessage(message);
const queue = new QueueProxy(port, config.maxReceiveCount, config.visibilityTimeoutMs);
const fetcher = new Fetcher(new AddressGuard(config.guard), undefined, { envProxy: config.envProxy, proxyAuthFor: config.proxyAuthFor, maxSockets: config.maxSockets });
const stop = new AbortController();
const cancels = new CancelRegistry();
const progress = new Map<string, { done: number; failed: number }>();

/** The main thread's ledger, seen from here: chunks are posted to it; it alone finishes jobs. */
const mainLedger: Ledger = {
  async recordChunk(job, chunk, counts, options = {}) {
    flushProgress();
    post({ type: 'chunk-done', jobId: job.jobId, chunk, counts, lost: options.lost });
    return { complete: false, chunksDone: 0, counted: true };
  },
  async progress() {
    throw new Error('job totals are kept in the main thread');
  },
  async claimFinish() {
    return false;
  },
};

const deps: MessageDeps = {
  store: new LocalStore(config.dataDir),
  fetcher,
  ledger: mainLedger,
  queue,
  onRecord(jobId, record) {
    const p = progress.get(jobId) ?? { done: 0, failed: 0 };
    p.done++;
    if (!record.ok) p.failed++;
    progress.set(jobId, p);
  },
  cancelSignal: (jobId) => cancels.signal(jobId),
  callbackSecret: async () => config.callbackSecret,
  callbackRetryBaseMs: config.callbackRetryBaseMs,
  partEveryMs: config.partEveryMs,
};

function flushProgress(): void {
  for (const [jobId, p] of progress) post({ type: 'progress', jobId, ...p });
  progress.clear();
}
const ticker = setInterval(flushProgress, PROGRESS_EVERY_MS);

port.on('message', (message: ToThread) => {
  if (message.type === 'reply') queue.settle(message);
  else if (message.type === 'cancel') cancels.cancel(message.jobId);
  else if (message.type === 'stop') stop.abort();
});

const loop = new WorkerLoop({
  queue,
  deps,
  signal: stop.signal,
  maxChunksInFlight: config.maxChunksInFlight,
  retryDelayMs: config.retryDelayMs,
  onResult(result) {
    const record = result.delivery?.record;
    if (record && result.jobId) post({ type: 'callback', jobId: result.jobId, record });
  },
  onError: (error, context) => post({ type: 'error', context, message: (error as Error)?.message ?? String(error) }),
});

await loop.run();
await loop.drain();
clearInterval(ticker);
flushProgress();
await fetcher.close();
post({ type: 'stopped' });
port.close();
