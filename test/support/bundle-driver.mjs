// Runs a job through the built Lambda bundles (dist/), as Lambda would, on whatever Node runs this
// file (CI runs it on Node 24, the Lambda runtime's). The API bundle gets HTTP API v2 events; the
// worker bundle gets SQS batches received from the queue at AWS_ENDPOINT_URL_SQS. Prints a JSON
// summary on stdout.
import { randomUUID } from 'node:crypto';
import { DeleteMessageCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

const dist = process.env.DRIVER_DIST;
const urls = JSON.parse(process.env.DRIVER_URLS);
const { handler: api } = await import(`${dist}/api/index.mjs`);
const { handler: worker } = await import(`${dist}/worker/index.mjs`);
const token = process.env.FANOUT_TOKEN;
const queueUrl = process.env.FANOUT_QUEUE_URL;

function context(ms = 900_000) {
  const deadline = Date.now() + ms;
  return { awsRequestId: randomUUID(), functionName: 'fanout', getRemainingTimeInMillis: () => deadline - Date.now() };
}

function event(method, path, body, contentType) {
  const [rawPath, rawQueryString = ''] = path.split('?');
  return {
    version: '2.0', routeKey: '$default', rawPath, rawQueryString,
    headers: { host: 'api.example.com', authorization: `Bearer ${token}`, ...(contentType ? { 'content-type': contentType } : {}) },
    requestContext: { http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.1', userAgent: 'driver' }, domainName: 'api.example.com', requestId: randomUUID(), routeKey: '$default', stage: '$default', timeEpoch: Date.now() },
    body, isBase64Encoded: false,
  };
}

const accepted = await api(event('POST', '/jobs?chunkSize=7', urls.join('\n'), 'text/plain'), context());
if (accepted.statusCode !== 202) throw new Error(`submit failed: ${accepted.statusCode} ${accepted.body}`);
const { jobId } = JSON.parse(accepted.body);

const sqs = new SQSClient({});
let invocations = 0;
for (let round = 0; round < 200; round++) {
  const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 5, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }));
  if (Messages.length === 0) break;
  const records = Messages.map((m) => ({
    messageId: m.MessageId, receiptHandle: m.ReceiptHandle, body: m.Body, md5OfBody: m.MD5OfBody,
    attributes: { ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? '1', SentTimestamp: String(Date.now()) },
    messageAttributes: {}, eventSource: 'aws:sqs', eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:fanout-chunks', awsRegion: 'us-east-1',
  }));
  const response = await worker({ Records: records }, context());
  invocations++;
  const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
  for (const m of Messages) if (!failed.has(m.MessageId)) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
}

const status = JSON.parse((await api(event('GET', `/jobs/${jobId}`), context())).body);
const results = await api(event('GET', `/jobs/${jobId}/results`), context());
const body = results.isBase64Encoded ? Buffer.from(results.body, 'base64').toString() : results.body;
const indexes = body.trim().split('\n').map((line) => JSON.parse(line).index);
process.stdout.write(JSON.stringify({ node: process.version, jobId, invocations, status, indexes }) + '\n');
