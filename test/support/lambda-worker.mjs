// One warm Lambda container of the worker function, fed as the SQS event source mapping feeds it.
// Run on Node 24 under `ulimit -n 1024` (aws-scale.ts does). It imports the BUILT bundle
// (DRIVER_DIST/worker/index.mjs) and loops: receive up to HARNESS_BATCH_SIZE messages from the chunk
// queue (or HARNESS_DLQ_BATCH_SIZE from the dead-letter queue when the chunk queue is empty), build
// the SQSEvent, call handler(event, context) with a deadline of HARNESS_DEADLINE_MS, delete the
// messages not in batchItemFailures and leave the others to come back after the visibility
// timeout. fauxqs's redrive policy moves exhausted messages to the dead-letter queue.
//
// A handler still running at its deadline is what Lambda kills: the container then exits with
// code 3 (its messages come back later) and the harness starts a fresh one. The container exits 0
// once both queues are empty, nothing is in flight, and no other container is busy; 4 when the
// harness's time budget (HARNESS_GIVE_UP_AT) is spent; 5 when paused after HARNESS_PAUSE_AFTER_RECORDS
// chunk deliveries (so a status call can be measured mid-job with nothing else running).
//
// Writes its summary as JSON to HARNESS_OUT; the functions' logs go to stdout/stderr as on Lambda.
import { createHash, randomUUID } from 'node:crypto';
import { subscribe } from 'node:diagnostics_channel';
import { readdirSync, writeFileSync } from 'node:fs';
import { DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

const env = process.env;
const LAMBDA_PAYLOAD_MAX = 6_291_456;
const batchSize = Number(env.HARNESS_BATCH_SIZE ?? '2');
const dlqBatchSize = Number(env.HARNESS_DLQ_BATCH_SIZE ?? '1');
const deadlineMs = Number(env.HARNESS_DEADLINE_MS ?? '60000');
const memoryMb = Number(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '1024');
const queues = {
  chunks: { url: env.HARNESS_CHUNKS_URL, arn: env.HARNESS_CHUNKS_ARN },
  dlq: { url: env.HARNESS_DLQ_URL, arn: env.HARNESS_DLQ_ARN },
};

// File descriptors of this process, sampled: the number Lambda caps at 1,024.
// A sample that itself meets EMFILE means the process is at its limit.
let maxFds = 0;
let fdSamplesAtLimit = 0;
const fdLimit = Number(env.HARNESS_FD_LIMIT ?? '1024');
function fds() {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch (error) {
    if (error.code !== 'EMFILE') throw error;
    fdSamplesAtLimit++;
    return fdLimit;
  }
}
const sampler = setInterval(() => (maxFds = Math.max(maxFds, fds())), 20);
sampler.unref();

// Failed connections by error code, whoever made them: the fetcher (undici) or the AWS SDK (node:http).
const connectErrors = {};
const noteError = (error) => {
  const code = error?.code ?? error?.cause?.code ?? error?.name ?? 'unknown';
  connectErrors[code] = (connectErrors[code] ?? 0) + 1;
};
subscribe('undici:request:error', (m) => noteError(m.error));
subscribe('undici:client:connectError', (m) => noteError(m.error));
subscribe('http.client.request.error', (m) => noteError(m.error));

const { handler } = await import(`${env.DRIVER_DIST}/worker/index.mjs`);

// The event source mapping's own calls: marked so the stand-ins count them apart from the function's.
const esm = new SQSClient({ endpoint: env.HARNESS_SQS_ENDPOINT });
esm.middlewareStack.add((next) => (args) => {
  args.request.headers['x-harness'] = '1';
  return next(args);
}, { step: 'build', name: 'harnessMark' });

const summary = {
  invocations: 0,
  records: 0,
  dlqRecords: 0,
  batchItemFailures: 0,
  invocationErrors: [],
  handlerMs: 0,
  gbSeconds: 0,
  maxResponseBytes: 0,
  maxEventBytes: 0,
  oversize: [],
  timedOut: false,
  maxFds: 0,
  fdSamplesAtLimit: 0,
  connectErrors: {},
  gaveUp: false,
  durations: [],
};

function context() {
  const deadline = Date.now() + deadlineMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'fanout-worker',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:fanout-worker',
    memoryLimitInMB: String(memoryMb),
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/fanout-worker',
    logStreamName: 'harness',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done() {}, fail() {}, succeed() {},
  };
}

async function receive(queue, max) {
  const { Messages = [] } = await esm.send(new ReceiveMessageCommand({
    QueueUrl: queue.url,
    MaxNumberOfMessages: max,
    MessageSystemAttributeNames: ['All'],
  }));
  return Messages;
}

function record(message, queue) {
  const a = message.Attributes ?? {};
  return {
    messageId: message.MessageId,
    receiptHandle: message.ReceiptHandle,
    body: message.Body,
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? 'AIDAHARNESS',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(message.Body).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: queue.arn,
    awsRegion: 'us-east-1',
  };
}

async function queued(queue) {
  const { Attributes = {} } = await esm.send(new GetQueueAttributesCommand({
    QueueUrl: queue.url,
    AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
  }));
  return Number(Attributes.ApproximateNumberOfMessages ?? 0) + Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0);
}

function finish(code) {
  summary.maxFds = Math.max(maxFds, fds());
  summary.fdSamplesAtLimit = fdSamplesAtLimit;
  summary.connectErrors = connectErrors;
  summary.gbSeconds = (summary.handlerMs / 1000) * (memoryMb / 1024);
  writeFileSync(env.HARNESS_OUT, JSON.stringify(summary));
  process.exit(code);
}

async function invoke(messages, queue) {
  const event = { Records: messages.map((m) => record(m, queue)) };
  summary.maxEventBytes = Math.max(summary.maxEventBytes, Buffer.byteLength(JSON.stringify(event)));
  const started = performance.now();
  let timer;
  const killed = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), deadlineMs)));
  let response;
  try {
    response = await Promise.race([handler(event, context()), killed]);
  } catch (error) {
    // An invocation error: the whole batch comes back after the visibility timeout.
    summary.invocationErrors.push(String(error?.stack ?? error).slice(0, 500));
    response = { batchItemFailures: messages.map((m) => ({ itemIdentifier: m.MessageId })) };
  } finally {
    clearTimeout(timer);
  }
  const ms = performance.now() - started;
  summary.invocations++;
  summary.handlerMs += Math.min(ms, deadlineMs);
  summary.durations.push(Math.round(ms));
  if (queue === queues.dlq) summary.dlqRecords += messages.length;
  else summary.records += messages.length;
  if (response === 'timeout') {
    // Lambda ends the container at its timeout; nothing is deleted.
    summary.timedOut = true;
    finish(3);
  }
  const bytes = Buffer.byteLength(JSON.stringify(response ?? null));
  summary.maxResponseBytes = Math.max(summary.maxResponseBytes, bytes);
  if (bytes > LAMBDA_PAYLOAD_MAX) summary.oversize.push(bytes);
  const failed = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
  summary.batchItemFailures += failed.size;
  for (const m of messages) {
    if (!failed.has(m.MessageId)) await esm.send(new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: m.ReceiptHandle }));
  }
}

// The harness's own time budget (tests): past it, stop taking messages and report.
const giveUpAt = Number(env.HARNESS_GIVE_UP_AT ?? 'Infinity');
// A pause (the harness measures a status call mid-job): stop after this many chunk records.
const pauseAfter = Number(env.HARNESS_PAUSE_AFTER_RECORDS ?? 'Infinity');
let idle = 0;
while (true) {
  if (summary.records >= pauseAfter) finish(5);
  if (Date.now() > giveUpAt) {
    summary.gaveUp = true;
    finish(4);
  }
  let queue = queues.chunks;
  let messages = await receive(queue, batchSize);
  if (messages.length === 0) {
    queue = queues.dlq;
    messages = await receive(queue, dlqBatchSize);
  }
  if (messages.length > 0) {
    idle = 0;
    await invoke(messages, queue);
    continue;
  }
  // Two empty looks in a row with nothing queued or in flight anywhere: the job's messages are done.
  const pending = (await queued(queues.chunks)) + (await queued(queues.dlq));
  if (pending > 0) idle = 0;
  else if (++idle >= 2) break;
  await new Promise((r) => setTimeout(r, 250));
}
finish(0);
