/**
 * The third-party AWS stand-ins of the scale harness: fauxqs (SQS + S3) and dynalite (DynamoDB),
 * started in a child process on Node 24 (test/support/aws-services.mjs), with the request counts
 * each keeps. Where fauxqs is more lenient than AWS (it ignores `If-None-Match: *` on PUT), the
 * create-if-absent rule stays tested against mocked clients elsewhere.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ensureNode24 } from './node24.ts';

const script = fileURLToPath(new URL('./aws-services.mjs', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));

/** Requests per service (s3, sqs, dynamodb) and operation. */
export type RequestCounts = Record<string, Record<string, number>>;

export interface ServiceCounts {
  /** Made by the Lambda functions. */
  functions: RequestCounts;
  /** Made by the harness itself (the event source mapping's receives and deletes, downloads). */
  harness: RequestCounts;
}

export interface AwsServices {
  fauxqs: string;
  dynamodb: string;
  control: string;
  bucket: string;
  table: string;
  queues: { chunks: { url: string; arn: string }; dlq: { url: string; arn: string } };
  counts(): Promise<ServiceCounts>;
  reset(): Promise<void>;
  /** Empties both queues. */
  purge(): Promise<void>;
  close(): Promise<void>;
}

export interface ServicesOptions {
  /** The queues' visibility timeout, seconds (the worker's FANOUT_VISIBILITY_TIMEOUT must match). */
  visibilityTimeoutSeconds?: number;
  /** Deliveries before the dead-letter queue. */
  maxReceiveCount?: number;
}

/** Starts fauxqs and dynalite, with the queues, bucket and ledger table the stack would create. */
export async function startAwsServices(options: ServicesOptions = {}): Promise<AwsServices> {
  const child: ChildProcess = spawn(ensureNode24(), [script], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: {
      PATH: process.env.PATH,
      SCALE_VISIBILITY_TIMEOUT: String(options.visibilityTimeoutSeconds ?? 30),
      SCALE_MAX_RECEIVE_COUNT: String(options.maxReceiveCount ?? 5),
    },
  });
  const firstLine = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => resolve(line));
    child.once('exit', (code) => reject(new Error(`aws-services exited with ${code}`)));
  });
  const ready = JSON.parse(firstLine) as Omit<AwsServices, 'counts' | 'reset' | 'close'>;
  return {
    ...ready,
    counts: async () => (await fetch(`${ready.control}/counts`)).json() as Promise<ServiceCounts>,
    reset: async () => void (await fetch(`${ready.control}/reset`, { method: 'POST' })).arrayBuffer(),
    purge: async () => void (await fetch(`${ready.control}/purge`, { method: 'POST' })).arrayBuffer(),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin!.end();
        setTimeout(() => child.kill('SIGKILL'), 2_000).unref();
      }),
  };
}

/** Sum of every operation of one service. */
export function total(counts: RequestCounts, service: string): number {
  return Object.values(counts[service] ?? {}).reduce((a, b) => a + b, 0);
}

/** counts minus before, operation by operation. */
export function subtract(after: RequestCounts, before: RequestCounts): RequestCounts {
  const out: RequestCounts = {};
  for (const [service, ops] of Object.entries(after)) {
    for (const [op, n] of Object.entries(ops)) {
      const d = n - (before[service]?.[op] ?? 0);
      if (d > 0) (out[service] ??= {})[op] = d;
    }
  }
  return out;
}

/** a plus b, operation by operation. */
export function addCounts(a: RequestCounts, b: RequestCounts): RequestCounts {
  const out: RequestCounts = structuredClone(a);
  for (const [service, ops] of Object.entries(b)) {
    for (const [op, n] of Object.entries(ops)) (out[service] ??= {})[op] = (out[service]?.[op] ?? 0) + n;
  }
  return out;
}
