import { PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { awsLimits, readAwsEnv } from '../functions/aws/environment.ts';
import { awsTokenSource } from '../functions/aws/token.ts';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store, s3ClientConfig } from '../functions/aws/s3-store.ts';
import { SqsQueue } from '../functions/aws/sqs-queue.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import type { ObjectStore } from '../functions/core/ports.ts';
import { startS3, type FakeS3 } from './support/s3.ts';
import { tempDir } from './support/tmp.ts';

let s3: FakeS3;
let client: S3Client;
beforeAll(async () => {
  s3 = await startS3();
  client = new S3Client({
    ...s3ClientConfig({ FANOUT_S3_FORCE_PATH_STYLE: '1' }),
    endpoint: s3.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
});
afterAll(() => s3.close());

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of iterable) out.push(x);
  return out;
}

async function text(stream: Readable | null): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream!) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks).toString();
}

/** The ObjectStore contract, run against the folder store and against S3 (s3rver). */
describe.each([
  ['LocalStore', () => new LocalStore(tempDir()) as ObjectStore],
  ['S3Store on s3rver', () => new S3Store(client, s3.bucket) as ObjectStore],
])('ObjectStore contract: %s', (_name, make) => {
  let store: ObjectStore;
  beforeAll(() => {
    store = make();
  });

  it('puts strings, bytes and streams; gets them whole, streamed and from an offset', async () => {
    await store.put('c/a.txt', 'hello world');
    await store.put('c/b.bin', new Uint8Array([1, 2, 3]));
    await store.put('c/s.txt', Readable.from([Buffer.from('str'), Buffer.from('eamed')]));
    expect((await store.get('c/a.txt'))!.toString()).toBe('hello world');
    expect([...(await store.get('c/b.bin'))!]).toEqual([1, 2, 3]);
    expect(await text(await store.getStream('c/s.txt'))).toBe('streamed');
    expect(await text(await store.getStream('c/a.txt', { start: 6 }))).toBe('world');
    expect(await store.size('c/a.txt')).toBe(11);
    expect(await store.size('c/none')).toBeNull();
    expect(await store.get('c/none')).toBeNull();
    expect(await store.getStream('c/none')).toBeNull();
    expect(await store.exists('c/a.txt')).toBe(true);
  });

  it('streams a multi-part object (larger than one 5 MiB part)', async () => {
    const block = Buffer.alloc(1024 * 1024, 120);
    const body = Readable.from((function* () {
      for (let i = 0; i < 12; i++) yield block;
    })());
    await store.put('c/big', body);
    expect(await store.size('c/big')).toBe(12 * 1024 * 1024);
  });

  it('lists in key order, by prefix, after a key; lists prefixes; deletes', async () => {
    for (const key of ['l/x/2', 'l/x/10', 'l/x/1', 'l/y', 'l/z/1']) await store.put(key, key);
    expect(await collect(store.list('l/'))).toEqual(['l/x/1', 'l/x/10', 'l/x/2', 'l/y', 'l/z/1']);
    expect(await collect(store.list('l/', { startAfter: 'l/x/2' }))).toEqual(['l/y', 'l/z/1']);
    expect(await store.listPrefixes('l/')).toEqual(['l/x/', 'l/z/']);
    await store.delete('l/y');
    await store.deletePrefix('l/x/');
    expect(await collect(store.list('l/'))).toEqual(['l/z/1']);
  });
});

describe('S3Store conditional writes', () => {
  it('sends If-None-Match: * for create-if-absent and reports an existing key (412) as false', async () => {
    const mock = mockClient(S3Client);
    try {
      const mocked = new S3Store(new S3Client({ region: 'us-east-1' }), 'b');
      mock.on(PutObjectCommand).resolvesOnce({}).rejectsOnce(
        new S3ServiceException({ name: 'PreconditionFailed', $fault: 'client', $metadata: { httpStatusCode: 412 }, message: 'At least one of the pre-conditions you specified did not hold' }),
      );
      expect(await mocked.put('k', 'first', { ifAbsent: true })).toBe(true);
      expect(await mocked.put('k', 'second', { ifAbsent: true })).toBe(false);
      const calls = mock.commandCalls(PutObjectCommand);
      expect(calls.map((c) => c.args[0].input.IfNoneMatch)).toEqual(['*', '*']);
      mock.on(PutObjectCommand).rejects(new S3ServiceException({ name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'denied' }));
      await expect(mocked.put('k', 'x', { ifAbsent: true })).rejects.toThrow('denied');
      await mocked.put('k2', 'x').catch(() => {});
      expect(mock.commandCalls(PutObjectCommand).at(-1)!.args[0].input.IfNoneMatch).toBeUndefined();
    } finally {
      mock.restore();
    }
  });
});

describe('SqsQueue', () => {
  it('batches within 10 entries and 256 KiB', () => {
    const small = Array.from({ length: 25 }, (_, i) => `m${i}`);
    expect(SqsQueue.batches(small).map((b) => b.length)).toEqual([10, 10, 5]);
    const big = Array.from({ length: 3 }, () => 'x'.repeat(100 * 1024));
    expect(SqsQueue.batches(big).map((b) => b.length)).toEqual([2, 1]);
    expect(() => SqsQueue.batches(['x'.repeat(300 * 1024)])).toThrow(/exceeds/);
  });

  it('resends the entries SQS reports as failed, and gives up on sender faults', async () => {
    const mock = mockClient(SQSClient);
    try {
      const queue = new SqsQueue(new SQSClient({ region: 'us-east-1' }), { queueUrl: 'https://sqs/q', maxReceiveCount: 5, visibilityTimeoutMs: 60_000 });
      mock
        .on(SendMessageBatchCommand)
        .resolvesOnce({ Successful: [{ Id: '0', MessageId: 'a', MD5OfMessageBody: '' }], Failed: [{ Id: '1', SenderFault: false, Code: 'InternalError' }] })
        .resolvesOnce({ Successful: [{ Id: '1', MessageId: 'b', MD5OfMessageBody: '' }], Failed: [] });
      await queue.send(['one', 'two']);
      const calls = mock.commandCalls(SendMessageBatchCommand);
      expect(calls.map((c) => c.args[0].input.Entries!.map((e) => e.MessageBody))).toEqual([['one', 'two'], ['two']]);

      mock.reset();
      mock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [{ Id: '0', SenderFault: true, Code: 'InvalidMessageContents', Message: 'bad' }] });
      await expect(queue.send(['bad'])).rejects.toThrow(/InvalidMessageContents/);
    } finally {
      mock.restore();
    }
  });

  it('sends a delay as DelaySeconds, rounded up and at most 900 (a callback retry waits in the queue)', async () => {
    const mock = mockClient(SQSClient);
    try {
      const queue = new SqsQueue(new SQSClient({ region: 'us-east-1' }), { queueUrl: 'https://sqs/q', maxReceiveCount: 5, visibilityTimeoutMs: 60_000 });
      mock.on(SendMessageBatchCommand).resolves({ Successful: [], Failed: [] });
      await queue.send(['a'], { delayMs: 1_500 });
      await queue.send(['b'], { delayMs: 3_600_000 });
      await queue.send(['c']);
      const entries = mock.commandCalls(SendMessageBatchCommand).map((c) => c.args[0].input.Entries![0]!.DelaySeconds);
      expect(entries).toEqual([2, 900, undefined]);
    } finally {
      mock.restore();
    }
  });

  it('receives with the receive count', async () => {
    const mock = mockClient(SQSClient);
    try {
      const queue = new SqsQueue(new SQSClient({ region: 'us-east-1' }), { queueUrl: 'https://sqs/q', maxReceiveCount: 5, visibilityTimeoutMs: 60_000 });
      mock.on(ReceiveMessageCommand).resolves({
        Messages: [{ MessageId: 'm', ReceiptHandle: 'r', Body: '{}', Attributes: { ApproximateReceiveCount: '3' } }],
      });
      expect(await queue.receive({ max: 20, waitMs: 30_000 })).toEqual([{ id: 'm', receipt: 'r', body: '{}', receiveCount: 3 }]);
      const input = mock.commandCalls(ReceiveMessageCommand)[0]!.args[0].input;
      expect(input).toMatchObject({ MaxNumberOfMessages: 10, WaitTimeSeconds: 20, MessageSystemAttributeNames: ['ApproximateReceiveCount'] });
    } finally {
      mock.restore();
    }
  });
});

describe('the API token on AWS', () => {
  const env = { FANOUT_BUCKET: 'b', FANOUT_QUEUE_URL: 'https://sqs/q', FANOUT_MAX_RECEIVE_COUNT: 5, FANOUT_VISIBILITY_TIMEOUT: 60 };

  it('reads the secret once and caches it', async () => {
    const mock = mockClient(SecretsManagerClient);
    try {
      mock.on(GetSecretValueCommand).resolves({ SecretString: 'from-secrets-manager\n' });
      const source = awsTokenSource({ ...env, FANOUT_TOKEN_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:1:secret:t' }, new SecretsManagerClient({ region: 'us-east-1' }));
      expect(await source()).toBe('from-secrets-manager');
      expect(await source()).toBe('from-secrets-manager');
      expect(mock.commandCalls(GetSecretValueCommand)).toHaveLength(1);
      expect(mock.commandCalls(GetSecretValueCommand)[0]!.args[0].input.SecretId).toBe('arn:aws:secretsmanager:us-east-1:1:secret:t');
    } finally {
      mock.restore();
    }
  });

  it('prefers FANOUT_TOKEN, and refuses to run open', async () => {
    expect(await awsTokenSource({ ...env, FANOUT_TOKEN: 'direct' })()).toBe('direct');
    expect(() => awsTokenSource(env)).toThrow(/must not run without a token/);
  });

  it('names a missing environment variable', () => {
    expect(() => readAwsEnv({ FANOUT_QUEUE_URL: 'https://sqs/q' })).toThrow(/FANOUT_BUCKET/);
  });

  it('reads the limits from one table: defaults when unset or empty, a malformed value named', () => {
    expect(awsLimits({})).toMatchObject({ FANOUT_API_BUDGET_MS: 20_000, FANOUT_MAX_REQUEST_BYTES: 4 * 1024 * 1024 });
    expect(awsLimits({ FANOUT_API_BUDGET_MS: ' 200 ', FANOUT_MAX_REQUEST_BYTES: '' })).toMatchObject({ FANOUT_API_BUDGET_MS: 200, FANOUT_MAX_REQUEST_BYTES: 4 * 1024 * 1024 });
    expect(() => awsLimits({ FANOUT_API_BUDGET_MS: 'soon' })).toThrow(/FANOUT_API_BUDGET_MS: .*"soon"/);
    expect(() => awsLimits({ FANOUT_RESULT_PAGE_MAX_LINKS: '-1' })).toThrow(/FANOUT_RESULT_PAGE_MAX_LINKS/);
    // A page of nothing would send clients following `next` round in circles.
    for (const name of ['FANOUT_RESULT_PAGE_MAX_RECORDS', 'FANOUT_RESULT_PAGE_MAX_BYTES', 'FANOUT_RESULT_PAGE_MAX_LINKS']) {
      expect(() => awsLimits({ [name]: '0' }), name).toThrow(new RegExp(name));
    }
  });
});
