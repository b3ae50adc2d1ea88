// One Lambda container of the API function, fed HTTP API (v2) events as API Gateway feeds it.
// Run on Node 24 under `ulimit -n 1024` (aws-scale.ts does); imports the BUILT bundle
// (DRIVER_DIST/api/index.mjs). The file HARNESS_OPS_FILE holds a JSON list of operations run in order:
//   { "op": "submit", "body": "...", "contentType": "text/plain", "query": "chunkSize=1" }
//   { "op": "status" }                     GET /jobs/:id
//   { "op": "results", "query": "" }       GET /jobs/:id/results, following every page and link
// Every call is held to API Gateway's and Lambda's limits: request event and response (as
// JSON.stringify, a base64 body counted encoded) <= 6,291,456 bytes, under 29 s. Each call's
// S3/SQS/DynamoDB requests are read from the stand-ins' counters (HARNESS_CONTROL) around it: no
// other container may run meanwhile for those numbers to be the call's own.
// Writes a JSON summary to HARNESS_OUT.
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const env = process.env;
const LAMBDA_PAYLOAD_MAX = 6_291_456;
const API_GATEWAY_MS = 29_000;
const ops = JSON.parse(readFileSync(env.HARNESS_OPS_FILE, 'utf8'));
let jobId = env.HARNESS_JOB_ID;

let maxFds = 0;
const sampler = setInterval(() => {
  try {
    maxFds = Math.max(maxFds, readdirSync('/proc/self/fd').length);
  } catch {
    maxFds = Number(env.HARNESS_FD_LIMIT ?? '1024'); // EMFILE: at the limit
  }
}, 20);
sampler.unref();

const { handler } = await import(`${env.DRIVER_DIST}/api/index.mjs`);

function httpEvent(method, pathWithQuery, body, contentType) {
  const [rawPath, rawQueryString = ''] = pathWithQuery.split('?');
  const domainName = 'abc123.execute-api.us-east-1.amazonaws.com';
  return {
    version: '2.0', routeKey: '$default', rawPath, rawQueryString,
    headers: { host: domainName, authorization: `Bearer ${env.FANOUT_TOKEN}`, ...(contentType ? { 'content-type': contentType } : {}) },
    queryStringParameters: rawQueryString ? Object.fromEntries(new URLSearchParams(rawQueryString)) : undefined,
    requestContext: {
      accountId: '000000000000', apiId: 'abc123', domainName, domainPrefix: 'abc123',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'harness' },
      requestId: randomUUID(), routeKey: '$default', stage: '$default', time: new Date().toUTCString(), timeEpoch: Date.now(),
    },
    body, isBase64Encoded: false,
  };
}

function context() {
  const deadline = Date.now() + API_GATEWAY_MS;
  return {
    callbackWaitsForEmptyEventLoop: false, functionName: 'fanout-api', functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:fanout-api', memoryLimitInMB: '512',
    awsRequestId: randomUUID(), logGroupName: '/aws/lambda/fanout-api', logStreamName: 'harness',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()), done() {}, fail() {}, succeed() {},
  };
}

async function counts() {
  return (await fetch(`${env.HARNESS_CONTROL}/counts`)).json();
}

/** Requests per service made between two snapshots, by the functions only. */
function delta(before, after) {
  const out = {};
  for (const [service, ops] of Object.entries(after.functions)) {
    for (const [op, n] of Object.entries(ops)) {
      const d = n - (before.functions[service]?.[op] ?? 0);
      if (d > 0) (out[service] ??= {})[op] = d;
    }
  }
  return out;
}

const calls = [];
const violations = [];

/** One API call as API Gateway makes it, measured and checked against the limits. */
async function call(method, path, body, contentType) {
  const event = httpEvent(method, path, body, contentType);
  const eventBytes = Buffer.byteLength(JSON.stringify(event));
  const before = await counts();
  const started = performance.now();
  const response = await handler(event, context());
  const ms = performance.now() - started;
  const requests = delta(before, await counts());
  const responseBytes = Buffer.byteLength(JSON.stringify(response));
  const entry = { method, path: path.replace(jobId ?? '\0', ':id'), status: response.statusCode, ms: Math.round(ms), eventBytes, responseBytes, requests };
  calls.push(entry);
  if (eventBytes > LAMBDA_PAYLOAD_MAX) violations.push({ ...entry, limit: 'request over 6 MB' });
  if (responseBytes > LAMBDA_PAYLOAD_MAX) violations.push({ ...entry, limit: 'response over 6 MB' });
  if (ms > API_GATEWAY_MS) violations.push({ ...entry, limit: 'over 29 s' });
  const headers = Object.fromEntries(Object.entries(response.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
  const text = response.body === undefined ? '' : response.isBase64Encoded ? Buffer.from(response.body, 'base64').toString('utf8') : response.body;
  return { status: response.statusCode, headers, text };
}

/** The next page of a paged response: a `Link: <...>; rel="next"` header, `Fanout-Next-Cursor`, or a JSON `next`. */
function nextPath(current, headers, json) {
  const link = /<([^>]+)>\s*;\s*rel="?next"?/i.exec(headers.link ?? '');
  if (link) {
    const u = new URL(link[1], 'https://api.example');
    return u.pathname + u.search;
  }
  const cursor = headers['fanout-next-cursor'] ?? (json && typeof json.next === 'string' ? json.next : undefined);
  if (!cursor) return null;
  if (cursor.startsWith('/') || /^https?:/.test(cursor)) {
    const u = new URL(cursor, 'https://api.example');
    return u.pathname + u.search;
  }
  const u = new URL(current, 'https://api.example');
  u.searchParams.set('cursor', cursor);
  return u.pathname + u.search;
}

/** Reads every record back through the API: NDJSON pages, or link pages whose files are downloaded. */
async function readResults(query) {
  const lines = [];
  const pages = { ndjson: 0, links: 0, files: 0 };
  let path = `/jobs/${jobId}/results${query ? `?${query}` : ''}`;
  while (path) {
    const { status, headers, text } = await call('GET', path);
    if (status !== 200) throw new Error(`GET ${path}: ${status} ${text.slice(0, 300)}`);
    let json;
    if ((headers['content-type'] ?? '').includes('application/json')) {
      json = JSON.parse(text);
      pages.links++;
      for (const file of json.files ?? []) {
        // The user's own download from S3 (a presigned URL): marked so it is not counted as the API's.
        const res = await fetch(file.url, { headers: { 'x-harness': '1' } });
        if (!res.ok) throw new Error(`GET ${file.key}: ${res.status}`);
        const gz = Buffer.from(await res.arrayBuffer());
        for (const line of gunzipSync(gz).toString('utf8').split('\n')) if (line) lines.push(line);
        pages.files++;
      }
    } else {
      pages.ndjson++;
      for (const line of text.split('\n')) if (line) lines.push(line);
    }
    path = nextPath(path, headers, json);
  }
  // What the caller checks, kept small: indexes in the order read, failures by error code.
  const indexes = [];
  const failures = {};
  const samples = [];
  for (const line of lines) {
    const r = JSON.parse(line);
    indexes.push(r.index);
    if (!r.ok) {
      const code = r.error?.code ?? `status ${r.status}`;
      failures[code] = (failures[code] ?? 0) + 1;
      if (samples.length < 5) samples.push({ index: r.index, url: r.url, error: r.error });
    }
  }
  return { count: lines.length, indexes, failures, samples, pages };
}

const results = [];
for (const op of ops) {
  if (op.op === 'submit') {
    const { status, text } = await call('POST', `/jobs${op.query ? `?${op.query}` : ''}`, op.body, op.contentType ?? 'text/plain');
    if (status !== 202) throw new Error(`submit: ${status} ${text.slice(0, 500)}`);
    const accepted = JSON.parse(text);
    jobId = accepted.jobId;
    results.push({ op: 'submit', accepted });
  } else if (op.op === 'status') {
    const { status, text } = await call('GET', `/jobs/${jobId}`);
    results.push({ op: 'status', httpStatus: status, status: JSON.parse(text) });
  } else if (op.op === 'results') {
    results.push({ op: 'results', ...(await readResults(op.query)) });
  } else throw new Error(`unknown op ${op.op}`);
}

writeFileSync(env.HARNESS_OUT, JSON.stringify({ jobId, results, calls, violations, maxFds }));
process.exit(0);
