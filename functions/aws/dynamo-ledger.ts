/**
 * The AWS ledger on DynamoDB: the serverless fan-in counter, with single-item conditional updates
 * only (no transactions, so it also runs against dynalite).
 *
 * Table (FANOUT_LEDGER_TABLE): partition key `pk` (S), sort key `sk` (S), on demand, TTL on
 * `expiresAt`. Items of a job (pk = `job#ID`):
 * - `shard#000012`: chunks 12,000-12,999: `done` (number set of the chunks counted), `chunks` (how
 *   many), `lost` (number set), and the counts flattened into number attributes (`n`, `ok`, `fail`,
 *   `bytes`, `s_200`, `e_timeout`, `h_57` for latency bucket 57, `q_12` for wait bucket 12, `qms` and
 *   `dms` the summed wait and request time in ms);
 * - `job`: `shards` (number set of the shards whose chunks are all counted), `finisher` and
 *   `claimedAt` (the finish claim, with a lease).
 *
 * Counting a chunk is ONE UpdateItem on its shard (ADD done, chunks and the counters, on condition
 * that `done` does not contain the chunk): a redelivered chunk fails the condition and is never
 * counted twice. The chunk that fills its shard adds the shard to the job item (same condition);
 * the job is complete when every shard is in. A redelivery re-runs that propagation, so a crash
 * between the two updates heals. Requests per chunk: 1 (2 for the last chunk of each shard of
 * 1,000); `progress` is one Query (20 items for 20,000 chunks).
 */
import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { emptyChanges, emptyCounts, type ChangeCounts, type Counts } from '../core/counts.ts';
import type { JobMeta } from '../core/job.ts';
import { LEDGER_DEFAULTS, type Ledger, type LedgerProgress, type RecordOptions, type RecordOutcome } from '../core/ledger.ts';

/** DynamoDB ledger defaults, stated once. */
export const DYNAMO_LEDGER_DEFAULTS = {
  /** Chunks per shard item: keeps a shard's `done` set far below the 400 KB item limit. */
  shardSize: 1_000,
  /** Items expire this long after their last update (the job's manifest outlives them). */
  ttlDays: 90,
} as const;

type Item = Record<string, AttributeValue>;

const pad = (n: number) => String(n).padStart(6, '0');

/** The counts as flat attribute names and values (zeros left out). */
function flatten(counts: Counts): [string, number][] {
  const out: [string, number][] = [
    ['n', counts.count],
    ['ok', counts.succeeded],
    ['fail', counts.failed],
    ['bytes', counts.bytes],
  ];
  for (const [k, v] of Object.entries(counts.byStatus)) out.push([`s_${k}`, v]);
  for (const [k, v] of Object.entries(counts.byError)) out.push([`e_${k}`, v]);
  for (const [k, v] of Object.entries(counts.latency)) out.push([`h_${k}`, v]);
  // The wait for a connection slot: its histogram (q_) and the summed wait and request time, ms.
  for (const [k, v] of Object.entries(counts.queued ?? {})) out.push([`q_${k}`, v]);
  out.push(['qms', counts.queuedTotalMs ?? 0], ['dms', counts.durationTotalMs ?? 0]);
  // Change counts of a job with a baseline (`c_new`, `c_newlyFailing`, ...) and the bytes a 304 saved.
  for (const [k, v] of Object.entries(counts.changes ?? {})) out.push([`c_${k}`, v]);
  if (counts.bytesSaved) out.push(['saved', counts.bytesSaved]);
  return out.filter(([, v]) => v !== 0);
}

/** Adds a shard item's counters into `counts`. */
function addItem(counts: Counts, item: Item): void {
  for (const [name, value] of Object.entries(item)) {
    if (value.N === undefined) continue;
    const n = Number(value.N);
    if (name === 'n') counts.count += n;
    else if (name === 'ok') counts.succeeded += n;
    else if (name === 'fail') counts.failed += n;
    else if (name === 'bytes') counts.bytes += n;
    else if (name.startsWith('s_')) counts.byStatus[name.slice(2)] = (counts.byStatus[name.slice(2)] ?? 0) + n;
    else if (name.startsWith('e_')) counts.byError[name.slice(2)] = (counts.byError[name.slice(2)] ?? 0) + n;
    else if (name.startsWith('h_')) counts.latency[name.slice(2)] = (counts.latency[name.slice(2)] ?? 0) + n;
    else if (name.startsWith('q_')) counts.queued[name.slice(2)] = (counts.queued[name.slice(2)] ?? 0) + n;
    else if (name === 'qms') counts.queuedTotalMs += n;
    else if (name === 'dms') counts.durationTotalMs += n;
    else if (name.startsWith('c_')) {
      const changes = (counts.changes ??= emptyChanges());
      const key = name.slice(2) as keyof ChangeCounts;
      if (key in changes) changes[key] += n;
    } else if (name === 'saved') counts.bytesSaved = (counts.bytesSaved ?? 0) + n;
  }
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof ConditionalCheckFailedException || (error as Error)?.name === 'ConditionalCheckFailedException';
}

export interface DynamoLedgerOptions {
  shardSize?: number;
  ttlDays?: number;
}

/**
 * @example
 * const ledger = new DynamoLedger(new DynamoDBClient({}), process.env.FANOUT_LEDGER_TABLE!);
 * const { complete } = await ledger.recordChunk(job, 7, counts);
 */
export class DynamoLedger implements Ledger {
  private readonly shardSize: number;
  private readonly ttlSeconds: number;

  constructor(
    readonly client: DynamoDBClient,
    readonly table: string,
    options: DynamoLedgerOptions = {},
  ) {
    this.shardSize = options.shardSize ?? DYNAMO_LEDGER_DEFAULTS.shardSize;
    this.ttlSeconds = (options.ttlDays ?? DYNAMO_LEDGER_DEFAULTS.ttlDays) * 86_400;
  }

  private expiresAt(): AttributeValue {
    return { N: String(Math.floor(Date.now() / 1000) + this.ttlSeconds) };
  }

  private key(jobId: string, sk: string): Item {
    return { pk: { S: `job#${jobId}` }, sk: { S: sk } };
  }

  async recordChunk(job: JobMeta, chunk: number, counts: Counts, options: RecordOptions = {}): Promise<RecordOutcome> {
    const shard = Math.floor(chunk / this.shardSize);
    const key = this.key(job.jobId, `shard#${pad(shard)}`);
    const names: Record<string, string> = { '#done': 'done', '#chunks': 'chunks', '#u': 'updatedAt', '#x': 'expiresAt' };
    const values: Item = {
      ':set': { NS: [String(chunk)] },
      ':chunk': { N: String(chunk) },
      ':one': { N: '1' },
      ':now': { S: new Date().toISOString() },
      ':ttl': this.expiresAt(),
    };
    const adds = ['#done :set', '#chunks :one'];
    // Base-36 placeholders keep the expression short (DynamoDB allows 4 KB): two histograms can have a few hundred buckets.
    flatten(counts).forEach(([name, value], n) => {
      const i = n.toString(36);
      names[`#c${i}`] = name;
      values[`:c${i}`] = { N: String(value) };
      adds.push(`#c${i} :c${i}`);
    });
    if (options.lost) {
      names['#lost'] = 'lost';
      adds.push('#lost :set');
    }
    let shardChunks: number;
    let counted = true;
    try {
      const res = await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: key,
          UpdateExpression: `ADD ${adds.join(', ')} SET #u = :now, #x = :ttl`,
          ConditionExpression: 'attribute_not_exists(#done) OR NOT contains(#done, :chunk)',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      shardChunks = Number(res.Attributes?.chunks?.N ?? 0);
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      // Counted before (a redelivery): read the shard so the propagation below can heal a crash.
      counted = false;
      const res = await this.client.send(new GetItemCommand({ TableName: this.table, Key: key, ConsistentRead: true }));
      shardChunks = Number(res.Item?.chunks?.N ?? 0);
    }
    const shards = Math.ceil(job.chunks / this.shardSize);
    const inShard = Math.min(this.shardSize, job.chunks - shard * this.shardSize);
    if (shardChunks < inShard) return { complete: false, chunksDone: shardChunks, counted };
    const shardsIn = await this.addShard(job.jobId, shard);
    return { complete: shardsIn >= shards, chunksDone: shardChunks, counted };
  }

  /** Adds a full shard to the job item; returns how many shards are in. */
  private async addShard(jobId: string, shard: number): Promise<number> {
    const key = this.key(jobId, 'job');
    try {
      const res = await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: key,
          UpdateExpression: 'ADD #shards :set SET #x = :ttl',
          ConditionExpression: 'attribute_not_exists(#shards) OR NOT contains(#shards, :shard)',
          ExpressionAttributeNames: { '#shards': 'shards', '#x': 'expiresAt' },
          ExpressionAttributeValues: { ':set': { NS: [String(shard)] }, ':shard': { N: String(shard) }, ':ttl': this.expiresAt() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return res.Attributes?.shards?.NS?.length ?? 0;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const res = await this.client.send(new GetItemCommand({ TableName: this.table, Key: key, ConsistentRead: true }));
      return res.Item?.shards?.NS?.length ?? 0;
    }
  }

  async progress(jobId: string): Promise<LedgerProgress> {
    const counts = emptyCounts();
    const lost: number[] = [];
    let chunksDone = 0;
    let updatedAt: string | null = null;
    let start: Item | undefined;
    do {
      const res = await this.client.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: `job#${jobId}` } },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of res.Items ?? []) {
        if (!item.sk?.S?.startsWith('shard#')) continue;
        addItem(counts, item);
        chunksDone += Number(item.chunks?.N ?? 0);
        for (const c of item.lost?.NS ?? []) lost.push(Number(c));
        const at = item.updatedAt?.S ?? null;
        if (at !== null && (updatedAt === null || at > updatedAt)) updatedAt = at;
      }
      start = res.LastEvaluatedKey;
    } while (start);
    return { chunksDone, counts, lostChunks: lost.sort((a, b) => a - b), updatedAt };
  }

  async claimFinish(jobId: string, owner: string): Promise<boolean> {
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: this.key(jobId, 'job'),
          UpdateExpression: 'SET #f = :owner, #at = :now, #x = :ttl',
          // A claim whose holder died (and whose message is not coming back) lapses after the lease.
          ConditionExpression: 'attribute_not_exists(#f) OR #f = :owner OR #at < :stale',
          ExpressionAttributeNames: { '#f': 'finisher', '#at': 'claimedAt', '#x': 'expiresAt' },
          ExpressionAttributeValues: {
            ':owner': { S: owner },
            ':now': { N: String(Date.now()) },
            ':stale': { N: String(Date.now() - LEDGER_DEFAULTS.claimLeaseMs) },
            ':ttl': this.expiresAt(),
          },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }
}
