/**
 * A loopback SQS endpoint for tests (no SQS emulator installs here): the AWS JSON 1.0 protocol the
 * v3 SDK speaks, for the calls fanout makes, over an in-process MemoryQueue per queue URL. Message
 * MD5s are computed as SQS does, since the SDK checks them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryQueue } from '../../functions/local/memory-queue.ts';

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

export interface FakeSqs {
  endpoint: string;
  queueUrl(name: string): string;
  queue(name: string): MemoryQueue;
  /** Fails the next `n` SendMessageBatch entries (as SQS reports failed entries). */
  failNextEntries(n: number): void;
  calls: string[];
  close(): Promise<void>;
}

export async function startFakeSqs(options: { visibilityTimeoutMs?: number; maxReceiveCount?: number } = {}): Promise<FakeSqs> {
  const queues = new Map<string, MemoryQueue>();
  const calls: string[] = [];
  let entriesToFail = 0;
  const queueOf = (url: string) => {
    const name = url.split('/').pop()!;
    let q = queues.get(name);
    if (!q) {
      q = new MemoryQueue({ visibilityTimeoutMs: options.visibilityTimeoutMs ?? 30_000, maxReceiveCount: options.maxReceiveCount ?? 1000 });
      queues.set(name, q);
    }
    return q;
  };

  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', async () => {
      const action = String(req.headers['x-amz-target'] ?? '').replace('AmazonSQS.', '');
      calls.push(action);
      const body = raw ? JSON.parse(raw) : {};
      const reply = (status: number, json: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID() });
        res.end(JSON.stringify(json));
      };
      try {
        const q = queueOf(body.QueueUrl);
        if (action === 'SendMessageBatch') {
          const successful = [];
          const failed = [];
          for (const entry of body.Entries as { Id: string; MessageBody: string }[]) {
            if (entriesToFail > 0) {
              entriesToFail--;
              failed.push({ Id: entry.Id, SenderFault: false, Code: 'InternalError', Message: 'injected' });
              continue;
            }
            await q.send([entry.MessageBody]);
            successful.push({ Id: entry.Id, MessageId: randomUUID(), MD5OfMessageBody: md5(entry.MessageBody) });
          }
          return reply(200, { Successful: successful, Failed: failed });
        }
        if (action === 'ReceiveMessage') {
          const messages = await q.receive({ max: body.MaxNumberOfMessages ?? 1, waitMs: Math.min(1, body.WaitTimeSeconds ?? 0) * 200 });
          return reply(200, {
            Messages: messages.map((m) => ({
              MessageId: m.id,
              ReceiptHandle: m.receipt,
              MD5OfBody: md5(m.body),
              Body: m.body,
              Attributes: { ApproximateReceiveCount: String(m.receiveCount) },
            })),
          });
        }
        if (action === 'DeleteMessage') {
          await q.delete(body.ReceiptHandle);
          return reply(200, {});
        }
        if (action === 'ChangeMessageVisibility') {
          await q.changeVisibility(body.ReceiptHandle, body.VisibilityTimeout * 1000);
          return reply(200, {});
        }
        reply(400, { __type: 'com.amazonaws.sqs#InvalidAction', message: `fake SQS does not do ${action}` });
      } catch (error) {
        reply(500, { __type: 'com.amazonaws.sqs#InternalError', message: String(error) });
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    queueUrl: (name) => `${endpoint}/000000000000/${name}`,
    queue: (name) => queueOf(`${endpoint}/000000000000/${name}`),
    failNextEntries(n) {
      entriesToFail = n;
    },
    calls,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
