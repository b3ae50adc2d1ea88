/**
 * What finishing a chunk and answering status cost, at a job size where listing would hurt:
 * `npx tsx bench/protocol-cost.ts [CHUNKS]` (default 20,000 one-URL chunks) runs a job through the
 * shared message handler over a request-counting folder store and the DynamoDB ledger (dynalite),
 * and prints store (S3) and DynamoDB requests per chunk and per status call as JSON.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DynamoLedger } from '../functions/aws/dynamo-ledger.ts';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { openInput } from '../functions/core/input.ts';
import { handleMessage, type MessageDeps } from '../functions/core/messages.ts';
import { planJob } from '../functions/core/plan.ts';
import { jobStatus } from '../functions/core/status.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { CountingStore } from '../test/support/counting-store.ts';
import { startDynalite } from '../test/support/dynalite.ts';
import { startOrigin } from '../test/support/origin.ts';

const chunks = Number(process.argv[2] ?? 20_000);
const inFlight = 16;
const [origin, dyn] = await Promise.all([startOrigin(), startDynalite()]);
await dyn.createLedgerTable('ledger');
const dynamo = dyn.client();
const dir = mkdtempSync(join(tmpdir(), 'fanout-cost-'));
const store = new CountingStore(new LocalStore(dir));
const queue = new MemoryQueue({ maxReceiveCount: 3 });
const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
const ledger = new DynamoLedger(dynamo.client, 'ledger');
const deps: MessageDeps = { store, fetcher, queue, ledger, cancelPollMs: 3_600_000 };

const urls = Array.from({ length: chunks }, (_, i) => `${origin.url}/ok?n=${i}`).join('\n') + '\n';
const job = await planJob(store, queue, { input: await openInput(Readable.from([urls])), options: { chunkSize: 1, bodies: 'none' } });
const started = Date.now();
store.reset();
dynamo.reset();
const status: { done: number; s3: number; dynamo: number }[] = [];
let done = 0;
// Status is measured through its own counting store and client, apart from the workers' requests.
const statusStore = new CountingStore(new LocalStore(dir));
const statusDynamo = dyn.client();
const statusLedger = new DynamoLedger(statusDynamo.client, 'ledger');
const measureStatus = async () => {
  statusStore.reset();
  statusDynamo.reset();
  const answer = await jobStatus(statusStore, job.jobId, statusLedger);
  status.push({ done: answer.done, s3: statusStore.total(), dynamo: statusDynamo.total() });
};
const worker = async () => {
  for (;;) {
    const [m] = await queue.receive({ max: 1 });
    if (!m) return;
    await handleMessage(deps, m.body, { receiveCount: m.receiveCount, maxReceiveCount: 3 });
    await queue.delete(m.receipt);
    if (++done % Math.ceil(chunks / 4) === 0 && done < chunks) await measureStatus();
  }
};
await Promise.all(Array.from({ length: inFlight }, worker));
const s3 = store.total();
const ddb = dynamo.total();
const final = await jobStatus(store, job.jobId, ledger);
console.log(
  JSON.stringify(
    {
      chunks,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      state: final.state,
      done: final.done,
      s3PerChunk: Math.round((s3 / chunks) * 1000) / 1000,
      s3ByOp: Object.fromEntries(store.counts),
      dynamoPerChunk: Math.round((ddb / chunks) * 1000) / 1000,
      statusCalls: status,
    },
    null,
    2,
  ),
);
dynamo.client.destroy();
statusDynamo.client.destroy();
await fetcher.close();
await Promise.all([origin.close(), dyn.close()]);
rmSync(dir, { recursive: true, force: true });
