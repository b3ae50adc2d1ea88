/**
 * The Queue on SQS. Sends in batches of at most 10 entries and 256 KiB, retrying the entries SQS
 * reports as failed; receives with the receive count. Chunk messages only ever carry ids (the
 * items are in S3), so no message comes near SQS's size limit.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { QUEUE_MAX_DELAY_MS, type Queue, type ReceivedMessage, type SendOptions } from '../core/ports.ts';
import { sleep } from '../core/engine/retry.ts';

/** SQS limits and retry policy, stated once. */
export const SQS_LIMITS = {
  batchEntries: 10,
  batchBytes: 256 * 1024,
  /** Rounds of resending the entries a batch call reported as failed. */
  sendRetries: 5,
  sendRetryBaseMs: 100,
} as const;

export interface SqsQueueConfig {
  queueUrl: string;
  /** The redrive policy's maxReceiveCount (the worker writes chunk_failed on the last receive). */
  maxReceiveCount: number;
  visibilityTimeoutMs: number;
}

export class SqsQueue implements Queue {
  readonly maxReceiveCount: number;
  readonly visibilityTimeoutMs: number;

  constructor(
    readonly client: SQSClient,
    readonly config: SqsQueueConfig,
  ) {
    this.maxReceiveCount = config.maxReceiveCount;
    this.visibilityTimeoutMs = config.visibilityTimeoutMs;
  }

  /** Splits bodies into batches within SQS's entry and byte limits. */
  static batches(bodies: string[]): string[][] {
    const out: string[][] = [];
    let batch: string[] = [];
    let bytes = 0;
    for (const body of bodies) {
      const size = Buffer.byteLength(body);
      if (size > SQS_LIMITS.batchBytes) throw new Error(`a message of ${size} bytes exceeds SQS's ${SQS_LIMITS.batchBytes}`);
      if (batch.length === SQS_LIMITS.batchEntries || bytes + size > SQS_LIMITS.batchBytes) {
        out.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(body);
      bytes += size;
    }
    if (batch.length > 0) out.push(batch);
    return out;
  }

  async send(bodies: string[], { delayMs = 0 }: SendOptions = {}): Promise<void> {
    const delay = delayMs > 0 ? { DelaySeconds: Math.min(QUEUE_MAX_DELAY_MS / 1000, Math.ceil(delayMs / 1000)) } : {};
    for (const batch of SqsQueue.batches(bodies)) {
      let entries = batch.map((MessageBody, i) => ({ Id: String(i), MessageBody, ...delay }));
      for (let attempt = 0; entries.length > 0; attempt++) {
        const res = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.config.queueUrl, Entries: entries }));
        const failed = new Set((res.Failed ?? []).map((f) => f.Id));
        if (failed.size === 0) break;
        const senderFault = (res.Failed ?? []).find((f) => f.SenderFault);
        if (senderFault || attempt >= SQS_LIMITS.sendRetries) {
          const first = (res.Failed ?? [])[0]!;
          throw new Error(`SQS refused ${failed.size} messages (${first.Code}: ${first.Message})`);
        }
        entries = entries.filter((e) => failed.has(e.Id));
        await sleep(SQS_LIMITS.sendRetryBaseMs * 2 ** attempt);
      }
    }
  }

  async receive({ max, waitMs = 0, signal }: { max: number; waitMs?: number; signal?: AbortSignal }): Promise<ReceivedMessage[]> {
    const res = await this.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.config.queueUrl,
        MaxNumberOfMessages: Math.min(10, Math.max(1, max)),
        WaitTimeSeconds: Math.min(20, Math.round(waitMs / 1000)),
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
      { abortSignal: signal },
    );
    return (res.Messages ?? []).map((m) => ({
      id: m.MessageId!,
      body: m.Body ?? '',
      receipt: m.ReceiptHandle!,
      receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? '1'),
    }));
  }

  async delete(receipt: string): Promise<void> {
    await this.client.send(new DeleteMessageCommand({ QueueUrl: this.config.queueUrl, ReceiptHandle: receipt }));
  }

  async changeVisibility(receipt: string, ms: number): Promise<void> {
    await this.client.send(
      new ChangeMessageVisibilityCommand({ QueueUrl: this.config.queueUrl, ReceiptHandle: receipt, VisibilityTimeout: Math.round(ms / 1000) }),
    );
  }
}
