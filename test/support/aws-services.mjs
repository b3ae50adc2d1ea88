// Third-party AWS stand-ins for the scale harness, in one process on Node 24 (fauxqs 2 needs
// Node >= 22.5): fauxqs (SQS + S3) and dynalite (DynamoDB), both on loopback port 0, plus a small
// control server that reports how many requests each service got, by operation.
//
// Requests are counted in the servers' own request hooks. Those sent by the harness itself (the
// event source mapping's ReceiveMessage/DeleteMessage, result downloads) carry the header
// `x-harness: 1` and are counted apart, so the counts name only what the functions did.
//
// Environment: SCALE_VISIBILITY_TIMEOUT (s), SCALE_MAX_RECEIVE_COUNT, SCALE_BUCKET, SCALE_TABLE.
// Prints one JSON line when ready: { fauxqs, dynalite, control, bucket, table, queues }.
// Control: GET /counts -> { functions: {service: {op: n}}, harness: {...} }; POST /reset zeroes them;
// POST /purge empties both queues.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { buildApp } from 'fauxqs';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite');
// Not in fauxqs's exports map; the same file its buildApp imports.
const { SqsStore } = await import(new URL('../../node_modules/fauxqs/dist/sqs/sqsStore.js', import.meta.url).href);

const visibility = process.env.SCALE_VISIBILITY_TIMEOUT ?? '30';
const maxReceiveCount = process.env.SCALE_MAX_RECEIVE_COUNT ?? '5';
const bucket = process.env.SCALE_BUCKET ?? 'fanout-scale';
const table = process.env.SCALE_TABLE ?? 'fanout-ledger';
const account = '000000000000';
const region = 'us-east-1';

let counts = { functions: {}, harness: {} };
function count(harness, service, op) {
  const side = harness ? counts.harness : counts.functions;
  side[service] ??= {};
  side[service][op] = (side[service][op] ?? 0) + 1;
}

/** The S3 operation of a REST request, from its method and query (what S3 bills by). */
function s3Operation(method, url) {
  const q = new URL(url, 'http://x').searchParams;
  if (method === 'GET' && (q.has('list-type') || q.has('prefix') || q.has('delimiter'))) return 'ListObjectsV2';
  if (method === 'GET' && q.has('uploads')) return 'ListMultipartUploads';
  if (method === 'POST' && q.has('uploads')) return 'CreateMultipartUpload';
  if (method === 'PUT' && q.has('partNumber')) return 'UploadPart';
  if (method === 'POST' && q.has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'DELETE' && q.has('uploadId')) return 'AbortMultipartUpload';
  if (method === 'POST' && q.has('delete')) return 'DeleteObjects';
  return { GET: 'GetObject', PUT: 'PutObject', HEAD: 'HeadObject', DELETE: 'DeleteObject' }[method] ?? method;
}

// fauxqs: host '' makes queue URLs carry the address the client asked (TOOLCHAIN.md).
const sqsStore = Object.assign(new SqsStore(), { host: '' });
const app = buildApp({ logger: false, stores: { sqsStore } });
app.addHook('onRequest', async (req) => {
  const harness = req.headers['x-harness'] === '1';
  const target = String(req.headers['x-amz-target'] ?? '');
  if (target.startsWith('AmazonSQS.')) count(harness, 'sqs', target.slice('AmazonSQS.'.length));
  else if (req.url === '/health') return;
  else count(harness, 's3', s3Operation(req.method, req.url));
});
const fauxqs = await app.listen({ port: 0, host: '127.0.0.1' });

const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
dynamo.prependListener('request', (req) => {
  const target = String(req.headers['x-amz-target'] ?? '');
  count(req.headers['x-harness'] === '1', 'dynamodb', target.split('.')[1] ?? 'unknown');
});
await new Promise((resolve) => dynamo.listen(0, '127.0.0.1', resolve));
const dynamoUrl = `http://127.0.0.1:${dynamo.address().port}`;

async function dynamoCall(operation, body) {
  const date = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const res = await fetch(dynamoUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': `DynamoDB_20120810.${operation}`,
      'x-amz-date': date,
      'x-harness': '1',
      // dynalite checks the header's shape, not the signature
      authorization: `AWS4-HMAC-SHA256 Credential=harness/${date.slice(0, 8)}/${region}/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0`,
    },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`dynalite ${operation}: ${res.status} ${await res.text()}`);
  return res.json();
}

await dynamoCall('CreateTable', {
  TableName: table,
  AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }, { AttributeName: 'sk', AttributeType: 'S' }],
  KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
  BillingMode: 'PAY_PER_REQUEST',
});

// Queues as the stack makes them, through fauxqs's own SQS API: the chunk queue redrives to the
// dead-letter queue after maxReceiveCount deliveries.
async function sqsCall(action, body) {
  const res = await fetch(fauxqs, {
    method: 'POST',
    headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `AmazonSQS.${action}`, 'x-harness': '1' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`fauxqs ${action}: ${res.status} ${await res.text()}`);
  return res.json();
}
const arnOf = (name) => `arn:aws:sqs:${region}:${account}:${name}`;
const dlqUrl = (await sqsCall('CreateQueue', { QueueName: 'fanout-dlq', Attributes: { VisibilityTimeout: visibility } })).QueueUrl;
const chunksUrl = (await sqsCall('CreateQueue', {
  QueueName: 'fanout-chunks',
  Attributes: {
    VisibilityTimeout: visibility,
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: arnOf('fanout-dlq'), maxReceiveCount: Number(maxReceiveCount) }),
  },
})).QueueUrl;
const chunks = { url: chunksUrl, arn: arnOf('fanout-chunks') };
const dlq = { url: dlqUrl, arn: arnOf('fanout-dlq') };

const s3 = await fetch(`${fauxqs}/${bucket}`, { method: 'PUT', headers: { 'x-harness': '1' } });
if (!s3.ok) throw new Error(`create bucket: ${s3.status}`);

const control = createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/reset') counts = { functions: {}, harness: {} };
  // Between jobs: messages a previous run left (it gave up) must not leak into the next.
  if (req.method === 'POST' && req.url === '/purge') for (const q of [chunks, dlq]) await sqsCall('PurgeQueue', { QueueUrl: q.url });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(counts));
});
await new Promise((resolve) => control.listen(0, '127.0.0.1', resolve));

process.stdout.write(JSON.stringify({
  fauxqs,
  dynamodb: dynamoUrl,
  control: `http://127.0.0.1:${control.address().port}`,
  bucket,
  table,
  queues: {
    chunks: { url: chunks.url, arn: chunks.arn },
    dlq: { url: dlq.url, arn: dlq.arn },
  },
}) + '\n');

// Lives until its parent closes stdin (or kills it).
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
