/**
 * The worker thread's entry point: a worker loop over the shared folder store and the main thread's
 * queue (see threads.ts). Progress is reported in batches; a finished chunk is reported so the main
 * thread, which counts them, writes the manifest.
 */
import { setMaxListeners } from 'node:events';
import { parentPort, workerData } from 'node:worker_threads';
import { Fetcher } from '../core/engine/fetcher.ts';
import { AddressGuard } from '../core/engine/guard.ts';
import type { WorkerDeps } from '../core/worker.ts';
import { LocalStore } from './local-store.ts';
import type { FromThread, ThreadConfig, ToThread } from './threads.ts';
import { QueueProxy } from './threads.ts';
import { WorkerLoop } from './worker-loop.ts';

/** How often the thread reports progress. */
const PROGRESS_EVERY_MS = 100;

const port = parentPort!;
const config = workerData as ThreadConfig;
const post = (message: FromThread) => port.postMessage(message);
const queue = new QueueProxy(port, config.maxReceiveCount, config.visibilityTimeoutMs);
const fetcher = new Fetcher(new AddressGuard(config.guard), undefined, { envProxy: config.envProxy });
const stop = new AbortController();
const cancels = new Map<string, AbortController>();
const progress = new Map<string, { done: number; failed: number }>();

function cancelController(jobId: string): AbortController {
  let controller = cancels.get(jobId);
  if (!controller) {
    controller = new AbortController();
    setMaxListeners(0, controller.signal);
    cancels.set(jobId, controller);
  }
  return controller;
}

const deps: WorkerDeps = {
  store: new LocalStore(config.dataDir),
  fetcher,
  onRecord(jobId, record) {
    const p = progress.get(jobId) ?? { done: 0, failed: 0 };
    p.done++;
    if (!record.ok) p.failed++;
    progress.set(jobId, p);
  },
  cancelSignal: (jobId) => cancelController(jobId).signal,
  // The main thread counts finished chunks and writes the manifest.
  mayBeComplete(job, chunk) {
    flushProgress();
    post({ type: 'chunk-done', jobId: job.jobId, chunk });
    return false;
  },
};

function flushProgress(): void {
  for (const [jobId, p] of progress) post({ type: 'progress', jobId, ...p });
  progress.clear();
}
const ticker = setInterval(flushProgress, PROGRESS_EVERY_MS);

port.on('message', (message: ToThread) => {
  if (message.type === 'reply') queue.settle(message);
  else if (message.type === 'cancel') cancelController(message.jobId).abort(new Error('cancelled'));
  else if (message.type === 'stop') stop.abort();
});

const loop = new WorkerLoop({
  queue,
  deps,
  signal: stop.signal,
  maxChunksInFlight: config.maxChunksInFlight,
  retryDelayMs: config.retryDelayMs,
  onError: (error, context) => post({ type: 'error', context, message: (error as Error)?.message ?? String(error) }),
});

await loop.run();
await loop.drain();
clearInterval(ticker);
flushProgress();
await fetcher.close();
post({ type: 'stopped' });
port.close();
