/**
 * The scale harness: drives the BUILT Lambda bundles (scripts/build.ts) with AWS-shaped events
 * against third-party stand-ins (fauxqs for SQS + S3, dynalite for DynamoDB), under Lambda's limits:
 * - every function runs in a child process on Node 24 under `ulimit -n 1024`;
 * - the worker is fed as the SQS event source mapping does (batches of 2 from the chunk queue, 1
 *   from the dead-letter queue, partial batch responses, redelivery after the visibility timeout,
 *   a container killed at its deadline);
 * - the API gets HTTP API v2 events; every request and response is held to 6 MB, every call to 29 s.
 * Used by test/aws-scale.test.ts (a few thousand URLs) and bench/aws-scale.ts (20,000 chunks).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { buildBundles } from '../../scripts/build.ts';
import { addCounts, startAwsServices, subtract, type AwsServices, type RequestCounts } from './fauxqs.ts';
import { ensureNode24 } from './node24.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const support = fileURLToPath(new URL('.', import.meta.url));

/** Lambda's and the stack's numbers the harness holds the functions to, stated once. */
export const LAMBDA_LIMITS = {
  /** Descriptors a Lambda process may open. */
  fileDescriptors: 1024,
  /** Invocation request and response payload (synchronous), bytes. */
  payloadBytes: 6_291_456,
  /** API Gateway's integration timeout, ms. */
  apiMs: 29_000,
  /** The stack's worker memory (infra DEFAULT_SETTINGS.workerMemoryMb), for GB-seconds. */
  workerMemoryMb: 1024,
  /** The stack's event source batch sizes: chunk queue and dead-letter queue. */
  batchSize: 2,
  dlqBatchSize: 1,
  maxReceiveCount: 5,
} as const;

export interface HarnessOptions {
  /** Distinct loopback origins (ports of 127.0.0.1) the URLs are spread over. */
  origins: number;
  /** Queue visibility timeout, seconds; kept just above the worker deadline as the stack does (6x there). */
  visibilityTimeoutSeconds?: number;
}

export interface JobRun {
  urls: number;
  chunkSize: number;
  /** Job options as query parameters of POST /jobs (concurrency, timeoutMs, bodies, retries, ...). */
  options?: Record<string, string | number>;
  /** Each origin answers after this long. */
  delayMs?: number;
  /** Worker containers running at once (the event source's concurrency). */
  containers?: number;
  /** The worker's timeout: each invocation's context deadline. */
  deadlineMs?: number;
  /** GET /jobs/:id calls after the job (the first on a cold API container). */
  statusCalls?: number;
  /** Read every record back (false in the bench's largest runs to save time). */
  readResults?: boolean;
  /** Each origin's body size, bytes (default: a one-line body). */
  bodyBytes?: number;
  /**
   * The harness's own budget (tests): workers stop taking messages this long after submit, and the
   * report says `gaveUp` (messages then wait out a visibility timeout that would not fit in CI).
   */
  giveUpAfterMs?: number;
  /**
   * Pause the workers once about this fraction of the chunks is done and measure GET /jobs/:id
   * (cold, then warm container) on the running job, then go on.
   */
  pauseAtFraction?: number;
}

export interface ApiCall {
  method: string;
  path: string;
  status: number;
  ms: number;
  eventBytes: number;
  responseBytes: number;
  requests: RequestCounts;
}

export interface WorkerSummary {
  invocations: number;
  records: number;
  dlqRecords: number;
  batchItemFailures: number;
  invocationErrors: string[];
  handlerMs: number;
  gbSeconds: number;
  maxResponseBytes: number;
  maxEventBytes: number;
  oversize: number[];
  timedOut: boolean;
  /** Descriptor samples that met EMFILE themselves (the process at its limit). */
  fdSamplesAtLimit: number;
  /** Failed connections (fetcher and AWS SDK alike) by error code, e.g. EMFILE. */
  connectErrors: Record<string, number>;
  gaveUp: boolean;
  maxFds: number;
  durations: number[];
}

export interface ScaleReport {
  jobId: string;
  urls: number;
  chunks: number;
  wallMs: number;
  submit: ApiCall;
  /** Requests the worker function made over the whole job. */
  worker: RequestCounts;
  /** Requests the event source mapping made (receives, deletes, queue attribute polls). */
  eventSource: RequestCounts;
  containers: WorkerSummary[];
  invocations: number;
  gbSeconds: number;
  maxWorkerFds: number;
  fdSamplesAtLimit: number;
  connectErrors: Record<string, number>;
  batchItemFailures: number;
  /** The run hit giveUpAfterMs before the queues drained (results were then not read). */
  gaveUp: boolean;
  /** Log lines of the functions that mention EMFILE. */
  emfileLogLines: number;
  status: { state: string; total: number; done: number; succeeded: number; failed: number; chunks: { total: number; done: number } };
  statusCalls: ApiCall[];
  /** GET /jobs/:id on the running job (with pauseAtFraction): cold, then warm container. */
  midJobStatusCalls: ApiCall[];
  results?: { count: number; indexes: number[]; failures: Record<string, number>; samples: unknown[]; pages: Record<string, number>; calls: ApiCall[] };
  apiViolations: unknown[];
  maxApiFds: number;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function urlList(ports: number[], n: number, delayMs: number, bodyBytes: number): string {
  const params = new URLSearchParams({ ...(delayMs > 0 ? { delay: String(delayMs) } : {}), ...(bodyBytes > 0 ? { size: String(bodyBytes) } : {}) });
  const q = params.size > 0 ? `?${params}` : '';
  return Array.from({ length: n }, (_, i) => `http://127.0.0.1:${ports[i % ports.length]}/item/${i}${q}`).join('\n') + '\n';
}

/** Runs a script on Node 24 with Lambda's descriptor limit. */
function lambdaProcess(script: string, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['--norc', '--noprofile', '-c', `ulimit -n ${LAMBDA_LIMITS.fileDescriptors} && exec "$0" "$@"`, ensureNode24(), join(support, script)], {
      cwd: root,
      env,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function startOrigins(count: number): Promise<{ ports: number[]; close(): void }> {
  const child = spawn('bash', ['--norc', '--noprofile', '-c', `ulimit -n ${count * 3 + 1024} && exec "$0" "$@"`, process.execPath, join(support, 'scale-origin.mjs')], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { PATH: process.env.PATH, ORIGIN_COUNT: String(count) },
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`scale-origin exited with ${code}`)));
  });
  return { ports: (JSON.parse(line) as { ports: number[] }).ports, close: () => child.stdin!.end() };
}

export interface ScaleHarness {
  services: AwsServices;
  ports: number[];
  run(job: JobRun): Promise<ScaleReport>;
  close(): Promise<void>;
}

/** Starts the stand-ins and the origins and builds the bundles; `run` then drives one job end to end. */
export async function openScaleHarness(options: HarnessOptions): Promise<ScaleHarness> {
  mkdirSync(join(root, '.tmp'), { recursive: true });
  // Inside the project, so the bundles' AWS SDK imports resolve from node_modules as on Lambda's runtime.
  const work = mkdtempSync(join(root, '.tmp', 'scale-'));
  const dist = join(work, 'dist');
  const visibility = options.visibilityTimeoutSeconds ?? 30;
  const [services, origins] = await Promise.all([
    startAwsServices({ visibilityTimeoutSeconds: visibility, maxReceiveCount: LAMBDA_LIMITS.maxReceiveCount }),
    startOrigins(options.origins),
    buildBundles(dist),
  ]).then(([s, o]) => [s, o] as const);

  // The functions' environment, as the stack sets it, pointed at the stand-ins.
  const functionEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'harness',
    AWS_SECRET_ACCESS_KEY: 'harness',
    AWS_ENDPOINT_URL_S3: services.fauxqs,
    AWS_ENDPOINT_URL_SQS: services.fauxqs,
    AWS_ENDPOINT_URL_DYNAMODB: services.dynamodb,
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(LAMBDA_LIMITS.workerMemoryMb),
    FANOUT_S3_FORCE_PATH_STYLE: '1',
    FANOUT_BUCKET: services.bucket,
    FANOUT_QUEUE_URL: services.queues.chunks.url,
    FANOUT_DLQ_ARN: services.queues.dlq.arn,
    FANOUT_MAX_RECEIVE_COUNT: String(LAMBDA_LIMITS.maxReceiveCount),
    FANOUT_VISIBILITY_TIMEOUT: String(visibility),
    FANOUT_LEDGER_TABLE: services.table,
    FANOUT_TOKEN: 'harness-token',
    // Server mode blocks loopback: open it, with a prefix length (strict CIDR parsing) and the
    // flag very wide ranges may need.
    FANOUT_ALLOW_CIDRS: '127.0.0.0/8',
    FANOUT_ALLOW_WIDE_CIDRS: '1',
    POWERTOOLS_LOG_LEVEL: 'WARN',
    DRIVER_DIST: dist,
  };
  let runs = 0;

  async function api(ops: unknown[], jobId?: string) {
    const dir = join(work, `api-${runs}-${Math.random().toString(36).slice(2, 8)}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'ops.json'), JSON.stringify(ops));
    const out = join(dir, 'out.json');
    const result = await lambdaProcess('lambda-api.mjs', {
      ...functionEnv,
      HARNESS_OPS_FILE: join(dir, 'ops.json'),
      HARNESS_OUT: out,
      HARNESS_CONTROL: services.control,
      ...(jobId ? { HARNESS_JOB_ID: jobId } : {}),
    });
    if (result.code !== 0) throw new Error(`API container failed (${result.code}): ${result.stderr.slice(-2000)}`);
    return { ...(JSON.parse(readFileSync(out, 'utf8')) as { jobId: string; results: any[]; calls: ApiCall[]; violations: unknown[]; maxFds: number }), logs: result.stdout + result.stderr };
  }

  /** One worker slot of the event source: containers one after another until the queues drain. */
  async function workerSlot(slot: number, deadlineMs: number, giveUpAt: number, logs: string[], pauseAfterRecords?: number): Promise<WorkerSummary[]> {
    const summaries: WorkerSummary[] = [];
    for (let life = 0; life < 100; life++) {
      const out = join(work, `worker-${runs}-${slot}-${life}.json`);
      const result = await lambdaProcess('lambda-worker.mjs', {
        ...functionEnv,
        HARNESS_OUT: out,
        HARNESS_SQS_ENDPOINT: services.fauxqs,
        HARNESS_CHUNKS_URL: services.queues.chunks.url,
        HARNESS_CHUNKS_ARN: services.queues.chunks.arn,
        HARNESS_DLQ_URL: services.queues.dlq.url,
        HARNESS_DLQ_ARN: services.queues.dlq.arn,
        HARNESS_BATCH_SIZE: String(LAMBDA_LIMITS.batchSize),
        HARNESS_DLQ_BATCH_SIZE: String(LAMBDA_LIMITS.dlqBatchSize),
        HARNESS_DEADLINE_MS: String(deadlineMs),
        HARNESS_FD_LIMIT: String(LAMBDA_LIMITS.fileDescriptors),
        ...(Number.isFinite(giveUpAt) ? { HARNESS_GIVE_UP_AT: String(giveUpAt) } : {}),
        ...(pauseAfterRecords ? { HARNESS_PAUSE_AFTER_RECORDS: String(pauseAfterRecords) } : {}),
      });
      logs.push(result.stdout, result.stderr);
      if (result.code !== 0 && result.code !== 3 && result.code !== 4 && result.code !== 5) throw new Error(`worker container failed (${result.code}): ${result.stderr.slice(-2000)}`);
      summaries.push(JSON.parse(readFileSync(out, 'utf8')) as WorkerSummary);
      if (result.code === 0 || result.code === 4 || result.code === 5) return summaries;
    }
    throw new Error('worker slot: 100 containers killed at their deadline');
  }

  async function run(job: JobRun): Promise<ScaleReport> {
    runs++;
    await services.purge();
    const query = new URLSearchParams({ chunkSize: String(job.chunkSize), ...Object.fromEntries(Object.entries(job.options ?? {}).map(([k, v]) => [k, String(v)])) });
    const started = performance.now();
    const submitted = await api([{ op: 'submit', body: urlList(origins.ports, job.urls, job.delayMs ?? 0, job.bodyBytes ?? 0), contentType: 'text/plain', query: query.toString() }]);
    const jobId = submitted.jobId;
    // null while the workers plan the list (POST /jobs answered `planning` within its budget)
    const chunks = (submitted.results[0].accepted.chunks as number | null) ?? Math.ceil(job.urls / job.chunkSize);

    const before = await services.counts();
    const logs: string[] = [];
    const giveUpAt = job.giveUpAfterMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + job.giveUpAfterMs;
    const containerCount = job.containers ?? 1;
    const slots = (pause?: number) => Promise.all(Array.from({ length: containerCount }, (_, i) => workerSlot(i, job.deadlineMs ?? 60_000, giveUpAt, logs, pause)));
    let midJob: ApiCall[] = [];
    let containers: WorkerSummary[] = [];
    let worker: RequestCounts = {};
    let eventSource: RequestCounts = {};
    if (job.pauseAtFraction) {
      containers = (await slots(Math.max(1, Math.ceil((chunks * job.pauseAtFraction) / containerCount)))).flat();
      const paused = await services.counts();
      worker = subtract(paused.functions, before.functions);
      eventSource = subtract(paused.harness, before.harness);
      midJob = (await api([{ op: 'status' }, { op: 'status' }], jobId)).calls;
      Object.assign(before, await services.counts());
    }
    containers = [...containers, ...(await slots()).flat()];
    const wallMs = performance.now() - started;
    const after = await services.counts();
    worker = addCounts(worker, subtract(after.functions, before.functions));
    eventSource = addCounts(eventSource, subtract(after.harness, before.harness));

    const gaveUp = containers.some((c) => c.gaveUp);
    const statusOps = Array.from({ length: job.statusCalls ?? 2 }, () => ({ op: 'status' }));
    const read = await api([...statusOps, ...(job.readResults === false || gaveUp ? [] : [{ op: 'results' }])], jobId);
    const statusResults = read.results.filter((r) => r.op === 'status');
    const results = read.results.find((r) => r.op === 'results');
    const allLogs = [submitted.logs, read.logs, ...logs].join('\n');
    return {
      jobId,
      urls: job.urls,
      chunks,
      wallMs: Math.round(wallMs),
      submit: submitted.calls[0]!,
      worker,
      eventSource,
      midJobStatusCalls: midJob,
      containers,
      invocations: containers.reduce((a, c) => a + c.invocations, 0),
      gbSeconds: containers.reduce((a, c) => a + c.gbSeconds, 0),
      maxWorkerFds: Math.max(...containers.map((c) => c.maxFds)),
      fdSamplesAtLimit: containers.reduce((a, c) => a + c.fdSamplesAtLimit, 0),
      connectErrors: containers.reduce<Record<string, number>>((acc, c) => {
        for (const [code, n] of Object.entries(c.connectErrors)) acc[code] = (acc[code] ?? 0) + n;
        return acc;
      }, {}),
      batchItemFailures: containers.reduce((a, c) => a + c.batchItemFailures, 0),
      gaveUp,
      emfileLogLines: allLogs.split('\n').filter((l) => l.includes('EMFILE')).length,
      status: statusResults.at(-1)!.status,
      statusCalls: read.calls.filter((c) => c.path === '/jobs/:id'),
      ...(results ? { results: { ...results, calls: read.calls.filter((c) => c.path.startsWith('/jobs/:id/results')) } } : {}),
      apiViolations: [...submitted.violations, ...read.violations],
      maxApiFds: Math.max(submitted.maxFds, read.maxFds),
    };
  }

  return {
    services,
    ports: origins.ports,
    run,
    close: async () => {
      origins.close();
      await services.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
