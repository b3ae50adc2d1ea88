/**
 * Secrets stay secret (issue 11 item 6): header values from the worker's environment (`headerEnv`)
 * are sent but never stored or shown; inline credential headers are sent but redacted wherever
 * options are shown.
 */
import { readdirSync, readFileSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createApp } from '../functions/api/app.ts';
import { optionsFromQuery } from '../functions/api/submit.ts';
import { optionsQuery } from '../functions/cli/client-commands.ts';
import { awsHeaderSecrets } from '../functions/aws/header-secrets.ts';
import { SECRET_READ_TIMEOUT_MS, TOKEN_CACHE_MS, awsTokenSource } from '../functions/aws/token.ts';
import { TOKEN_RETRY_AFTER_S } from '../functions/api/auth.ts';
import { SecretUnavailableError } from '../functions/core/errors.ts';
import { callbackSecretSource } from '../functions/aws/callback-secret.ts';
import type { AwsEnv } from '../functions/aws/environment.ts';
import { Fetcher } from '../functions/core/engine/fetcher.ts';
import { AddressGuard } from '../functions/core/engine/guard.ts';
import { checkHeaderEnv, envSecrets, headerEnvForServer, refusedVariable, resolveHeaderEnv } from '../functions/core/header-env.ts';
import { openInput } from '../functions/core/input.ts';
import { parseJobOptions } from '../functions/core/options.ts';
import { planJob } from '../functions/core/plan.ts';
import { isSensitiveHeader, redactHeaders } from '../functions/core/redact.ts';
import { processChunk } from '../functions/core/worker.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { EmbeddedRuntime } from '../functions/local/runtime.ts';
import { startServer } from '../functions/local/serve.ts';
import { fanout, spawnFanout, until } from './support/cli.ts';
import { readRecords } from './support/jobs.ts';
import { tempDir } from './support/tmp.ts';

const SECRET = 'Bearer s3cr3t-from-env-4f1c';
const INLINE = 'inline-k3y-9a7b';

/** A loopback origin that answers 200 and keeps the headers of every request; `/away` redirects to `to`. */
interface Recorder {
  url: string;
  seen: IncomingHttpHeaders[];
  to?: string;
  close(): Promise<void>;
}

async function recorder(): Promise<Recorder> {
  const r = { seen: [] as IncomingHttpHeaders[] } as Recorder;
  const server: Server = createServer((req, res) => {
    r.seen.push(req.headers);
    if (req.url === '/away' && r.to) {
      res.writeHead(302, { location: `${r.to}/landed` }).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () => new Promise((resolve) => server.close(() => resolve()));
  return r;
}

/** Every byte under a folder as text (gzip files inflated), to look for a value anywhere in the store. */
function everything(dir: string): string {
  let text = '';
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) text += everything(path);
    else {
      const data = readFileSync(path);
      text += `\n${path}\n` + (name.endsWith('.gz') ? gunzipSync(data).toString('utf8') : data.toString('utf8'));
    }
  }
  return text;
}

let origin: Recorder;
let other: Recorder;
beforeAll(async () => {
  origin = await recorder();
  other = await recorder();
  origin.to = other.url;
});
afterAll(async () => {
  await origin.close();
  await other.close();
});

describe('the headerEnv option and redaction rules', () => {
  it('takes header names and variable names, and refuses bad variable names and a header given twice', () => {
    expect(parseJobOptions({ headerEnv: { authorization: 'API_TOKEN' } }).headerEnv).toEqual({ authorization: 'API_TOKEN' });
    expect(parseJobOptions({}).headerEnv).toEqual({});
    expect(() => parseJobOptions({ headerEnv: { authorization: '1TOKEN' } })).toThrow(/headerEnv.authorization.*environment variable name/);
    expect(() => parseJobOptions({ headerEnv: { host: 'H' } })).toThrow(/cannot be set/);
    // A bad header name is named, with why (not zod's "Invalid key in record").
    expect(() => parseJobOptions({ headerEnv: { 'bad header': 'T' } })).toThrow('option "headerEnv.bad header": "bad header" not a valid header name');
    expect(() => parseJobOptions({ headers: { 'bad header': 'x' } })).toThrow('option "headers.bad header": "bad header" not a valid header name');
    expect(() => parseJobOptions({ headers: { Authorization: 'x' }, headerEnv: { authorization: 'T' } })).toThrow(/also given in option "headers"/);
  });

  it('travels as repeated query parameters from `fanout submit` to the API', () => {
    const query = optionsQuery({ headerEnv: { authorization: 'API_TOKEN', 'x-key': 'KEY' }, concurrency: 3 });
    expect(query.toString()).toBe('headerEnv=authorization%3DAPI_TOKEN&headerEnv=x-key%3DKEY&concurrency=3');
    expect(optionsFromQuery(query)).toEqual({ headerEnv: { authorization: 'API_TOKEN', 'x-key': 'KEY' }, concurrency: 3 });
  });

  it('treats authorization, cookie, x-api-key and names with token, secret, key or auth as credentials', () => {
    for (const name of ['Authorization', 'proxy-authorization', 'Cookie', 'X-API-Key', 'x-auth-token', 'X-Client-Secret', 'apikey', 'x-goog-authuser']) {
      expect(isSensitiveHeader(name), name).toBe(true);
    }
    for (const name of ['accept', 'user-agent', 'x-request-id', 'content-type']) expect(isSensitiveHeader(name), name).toBe(false);
    expect(redactHeaders({ Authorization: 'Bearer abc', accept: 'text/html' })).toEqual({ Authorization: '***', accept: 'text/html' });
  });

  it("refuses fanout's and the platform's own variables (the Lambda role's credentials, the API token, the proxy secret) in every mode", async () => {
    for (const variable of ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'FANOUT_TOKEN', 'FANOUT_PROXY_AUTH', 'FANOUT_CALLBACK_SECRET_ARN', 'aws_secret_access_key']) {
      expect(() => parseJobOptions({ headerEnv: { 'x-stolen': variable } }), variable).toThrow(/own configuration, never sent as a header/);
      expect(refusedVariable(variable, {})).toMatch(/own configuration/);
      // A job stored before the rule: the worker refuses it too, and sends nothing.
      const resolved = await resolveHeaderEnv({ 'x-stolen': variable }, envSecrets({ [variable]: 'the-value' }), {});
      expect(resolved).toEqual({ error: expect.stringContaining(`${variable} cannot be used`) });
      expect(JSON.stringify(resolved)).not.toContain('the-value');
    }
  });

  it('with FANOUT_HEADER_ENV_VARS, only the variables the operator lists (the AWS stack always sets it: its headerSecrets)', async () => {
    const env = { FANOUT_HEADER_ENV_VARS: 'PARTNER_KEY, OTHER_KEY', PARTNER_KEY: 'k', DATABASE_URL: 'postgres://u:p@db/x' };
    expect(refusedVariable('PARTNER_KEY', env)).toBeUndefined();
    // Where the values are (serve, a worker), only what a job can use is told: OTHER_KEY is not set.
    expect(refusedVariable('DATABASE_URL', env)).toBe('the operator exposes only PARTNER_KEY (FANOUT_HEADER_ENV_VARS)');
    // The AWS API holds no values: the stack's checked names.
    expect(refusedVariable('DATABASE_URL', env, false)).toBe('the operator exposes only PARTNER_KEY, OTHER_KEY (FANOUT_HEADER_ENV_VARS)');
    expect(refusedVariable('DATABASE_URL', { FANOUT_HEADER_ENV_VARS: '' })).toMatch(/exposes no variable/);
    expect(refusedVariable('DATABASE_URL', {})).toBeUndefined(); // `fanout fetch`, `serve` without a list
    expect(() => checkHeaderEnv({ authorization: 'DATABASE_URL' }, env)).toThrow(/headerEnv.authorization.*DATABASE_URL cannot be used: the operator exposes only/);
    expect(() => checkHeaderEnv({ authorization: 'OTHER_KEY' }, env, false)).not.toThrow(); // the AWS API: names only
    expect(await resolveHeaderEnv({ authorization: 'DATABASE_URL' }, envSecrets(env), env)).toEqual({ error: expect.stringContaining('exposes only') });
    expect(await resolveHeaderEnv({ authorization: 'PARTNER_KEY' }, envSecrets(env), env)).toEqual({ headers: { authorization: 'k' } });
  });

  it("serve tells its operator at start which variables jobs may name, and warns of each listed one no job can use", () => {
    // A value pasted where a name belongs (the secret itself) is never echoed, nor a CRLF file's value.
    const env = {
      FANOUT_HEADER_ENV_VARS: `API_TOKEN, AWS_SECRET_ACCESS_KEY,NOT_SET,bad-name,${SECRET},PARTNER_KEY,FROM_CRLF_FILE`,
      API_TOKEN: SECRET,
      PARTNER_KEY: 'k',
      AWS_SECRET_ACCESS_KEY: 'aws',
      FROM_CRLF_FILE: `${SECRET}\r`,
    };
    const { summary, warnings } = headerEnvForServer(env);
    expect(summary).toBe('jobs may name API_TOKEN, PARTNER_KEY (FANOUT_HEADER_ENV_VARS)');
    expect(warnings).toEqual([
      "FANOUT_HEADER_ENV_VARS lists AWS_SECRET_ACCESS_KEY, which jobs may never name (fanout's or the platform's own configuration)",
      'FANOUT_HEADER_ENV_VARS lists NOT_SET, which is not set: jobs naming it are refused',
      'FANOUT_HEADER_ENV_VARS lists FROM_CRLF_FILE, whose value holds CR, LF or other control characters: every request naming it fails',
      'FANOUT_HEADER_ENV_VARS has 2 entries that are neither a variable set here nor a conventional name (not shown: it may be a value)',
    ]);
    expect(JSON.stringify({ summary, warnings })).not.toContain(SECRET);
    expect(refusedVariable('OTHER', env)).toBe('the operator exposes only API_TOKEN, PARTNER_KEY (FANOUT_HEADER_ENV_VARS)');
    // Many tokens are valid variable names: pasted into the list, they are never set, and never shown.
    const pasted = ['sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123', 'ghp_16C7e42F292c6912E7710c838347Ae178B4a', 'a3f9c2d4e5b6a7980f1e2d3c4b5a6978'];
    const withTokens = { FANOUT_HEADER_ENV_VARS: ['API_TOKEN', ...pasted].join(','), API_TOKEN: 'Bearer x' };
    const told = JSON.stringify([refusedVariable('OTHER', withTokens), headerEnvForServer(withTokens)]);
    for (const token of pasted) expect(told).not.toContain(token);
    expect(refusedVariable('OTHER', withTokens)).toBe('the operator exposes only API_TOKEN (FANOUT_HEADER_ENV_VARS)');
    expect(headerEnvForServer({ FANOUT_HEADER_ENV_VARS: '' })).toEqual({ summary: 'jobs may name no environment variable (FANOUT_HEADER_ENV_VARS lists none that is usable)', warnings: [] });
    // A list of thousands is one mistake: ten lines about it, not thousands.
    const many = Array.from({ length: 5_000 }, (_, i) => `MISSING_${i}`);
    const flood = headerEnvForServer({ FANOUT_HEADER_ENV_VARS: many.join(',') });
    expect(flood.warnings).toHaveLength(10);
    expect(flood.warnings.at(-1)).toBe('... and 4991 more about FANOUT_HEADER_ENV_VARS');
    expect(refusedVariable('OTHER', { FANOUT_HEADER_ENV_VARS: many.join(',') }, false)).toMatch(/^the operator exposes only MISSING_0, .*, MISSING_9 and 4990 more \(FANOUT_HEADER_ENV_VARS\)$/);
  });

  it('resolves variables, and names the variable (never a value) when one is missing or unusable', async () => {
    expect(await resolveHeaderEnv({ Authorization: 'T' }, envSecrets({ T: SECRET }))).toEqual({ headers: { authorization: SECRET } });
    const missing = await resolveHeaderEnv({ authorization: 'NOPE' }, envSecrets({}));
    expect(missing).toEqual({ error: expect.stringContaining('environment variable NOPE is not set') });
    const bad = await resolveHeaderEnv({ authorization: 'T' }, envSecrets({ T: 'a\r\nx-injected: 1' }));
    expect('error' in bad && bad.error).toContain('environment variable T holds CR, LF');
    expect(JSON.stringify(bad)).not.toContain('injected');
  });

  it('on AWS every Secrets Manager read (token, header values, callback secret) gives up after SECRET_READ_TIMEOUT_MS, with the SDK\'s retries, also when the body stalls', async () => {
    // A stand-in that never answers, or sends the headers and part of the body and then nothing (the
    // SDK's requestTimeout ends at the headers, and each of its attempts used to get its own).
    const hits = new Map<string, number>();
    const stuck = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const id = (JSON.parse(body) as { SecretId: string }).SecretId;
        hits.set(id, (hits.get(id) ?? 0) + 1);
        if (id.endsWith('-stall')) {
          res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'content-length': '60' });
          res.write('{"Name":"stalled",');
        }
      });
    });
    await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', r));
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://127.0.0.1:${(stuck.address() as AddressInfo).port}`,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    });
    delete process.env.AWS_MAX_ATTEMPTS; // the SDK's default: 3 attempts
    try {
      const arn = (name: string) => `arn:aws:secretsmanager:us-east-1:123456789012:secret:${name}`;
      const reads = ['silent', 'stall'].flatMap((mode) => [
        ['token', () => awsTokenSource({ FANOUT_TOKEN_SECRET_ARN: arn(`token-${mode}`) } as AwsEnv)()],
        ['header', () => awsHeaderSecrets({ FROM_SM: arn(`header-${mode}`) })('FROM_SM')],
        ['callback', () => callbackSecretSource({ FANOUT_CALLBACK_SECRET_ARN: arn(`callback-${mode}`) } as AwsEnv)()],
      ] as const).map(([name, read]) => ({ name, read }));
      const t0 = performance.now();
      const outcomes = await Promise.all(reads.map(({ read }) => Promise.resolve().then(read).then(() => 'answered', (e: Error) => e.message)));
      const took = performance.now() - t0;
      for (const outcome of outcomes) expect(outcome).toMatch(/did not answer within 5000 ms/);
      expect(took).toBeGreaterThanOrEqual(SECRET_READ_TIMEOUT_MS - 100);
      expect(took).toBeLessThan(SECRET_READ_TIMEOUT_MS + 3_000);
      expect([...hits.values()]).toEqual([1, 1, 1, 1, 1, 1]);
    } finally {
      process.env = saved;
      stuck.closeAllConnections();
      stuck.close();
    }
  }, 15_000);

  it("on AWS the API token is read once for concurrent requests, a failure is kept for the 503's Retry-After, and only timeouts and throttling count as passing", async () => {
    let sends = 0;
    let answer: () => Promise<{ SecretString?: string }> = async () => ({ SecretString: 'tok' });
    const client = { send: async () => (sends++, answer()) };
    const source = awsTokenSource({ FANOUT_TOKEN_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:1:secret:t' } as AwsEnv, client as never) as () => Promise<string>;
    const realNow = Date.now.bind(Date);
    let offset = 0;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + offset);
    try {
      expect(await Promise.all([source(), source(), source()])).toEqual(['tok', 'tok', 'tok']);
      expect(sends).toBe(1);
      offset += TOKEN_CACHE_MS + 1;
      answer = async () => {
        throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
      };
      await expect(source()).rejects.toBeInstanceOf(SecretUnavailableError);
      await expect(source()).rejects.toBeInstanceOf(SecretUnavailableError);
      expect(sends).toBe(2); // the second call answered from the kept failure
      offset += TOKEN_RETRY_AFTER_S * 1000 + 1;
      answer = async () => {
        throw Object.assign(new Error('User is not authorized'), { name: 'AccessDeniedException' });
      };
      const denied = await source().catch((e: unknown) => e);
      expect(denied).not.toBeInstanceOf(SecretUnavailableError);
      expect(sends).toBe(3);
    } finally {
      clock.mockRestore();
    }
  });

  it('on AWS reads a Secrets Manager ARN held by the variable, once per cache period', async () => {
    const calls: string[] = [];
    const client = { send: async (command: { input: { SecretId: string } }) => (calls.push(command.input.SecretId), { SecretString: `${SECRET}\n` }) };
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:api-token-AbCdEf';
    const source = awsHeaderSecrets({ FROM_SM: arn, PLAIN: 'plain-value' }, () => client as never);
    expect(await source('FROM_SM')).toBe(SECRET);
    expect(await source('FROM_SM')).toBe(SECRET);
    expect(await source('PLAIN')).toBe('plain-value');
    expect(await source('UNSET')).toBeUndefined();
    expect(calls).toEqual([arn]);
  });
});

describe('a worker without the variable', () => {
  it('writes records whose error names the header and the variable, and sends nothing', async () => {
    const store = new LocalStore(tempDir());
    const queue = new MemoryQueue();
    const fetcher = new Fetcher(new AddressGuard({ blockPrivate: false }));
    const before = origin.seen.length;
    const input = await openInput(Readable.from([`${origin.url}/a\n${origin.url}/b\n`]));
    const job = await planJob(store, queue, { input, options: { headerEnv: { authorization: 'PARTNER_TEST_ABSENT_VAR' } }, source: 'test' });
    const [message] = await queue.receive({ max: 1 });
    await processChunk({ store, fetcher, headerSecrets: envSecrets({}) }, message!.body);
    await fetcher.close();
    const records = await readRecords(store, job.jobId);
    expect(records.map((r) => r.error)).toEqual([0, 1].map(() => ({
      code: 'internal',
      message: 'header "authorization": environment variable PARTNER_TEST_ABSENT_VAR is not set where the worker runs (option headerEnv)',
    })));
    expect(origin.seen.length).toBe(before);
  });
});

describe('fanout fetch --header-env', () => {
  it('sends the value to the origin; job.json, records, status and jobs never hold it', async () => {
    const dir = tempDir();
    const list = join(dir, 'list.txt');
    const dataDir = join(dir, 'data');
    await import('node:fs/promises').then((fs) => fs.writeFile(list, `${origin.url}/one\n${origin.url}/two\n`));
    const before = origin.seen.length;
    const env = { PARTNER_TEST_TOK: SECRET };
    const run = await fanout(['fetch', list, '--data-dir', dataDir, '--header-env', 'authorization=PARTNER_TEST_TOK', '--header', `X-Api-Key: ${INLINE}`, '--json'], { env });
    expect(run.code, run.stderr).toBe(0);
    const seen = origin.seen.slice(before);
    expect(seen.map((h) => h.authorization)).toEqual([SECRET, SECRET]);
    expect(seen.map((h) => h['x-api-key'])).toEqual([INLINE, INLINE]);

    const stored = everything(dataDir);
    expect(stored).toContain('PARTNER_TEST_TOK'); // the name is kept...
    expect(stored).not.toContain('s3cr3t'); // ...never the value
    expect(run.stdout + run.stderr).not.toContain('s3cr3t');

    const jobId = (JSON.parse(run.stdout) as { jobId: string }).jobId;
    const status = await fanout(['status', jobId, '--data-dir', dataDir], { env });
    expect(status.code, status.stderr).toBe(0);
    const shown = JSON.parse(status.stdout) as { options: { headers: Record<string, string>; headerEnv: Record<string, string> } };
    expect(shown.options.headers).toEqual({ 'X-Api-Key': '***' });
    expect(shown.options.headerEnv).toEqual({ authorization: 'PARTNER_TEST_TOK' });
    const jobs = await fanout(['jobs', '--data-dir', dataDir, '--json'], { env });
    for (const out of [status.stdout, jobs.stdout]) {
      expect(out).not.toContain('s3cr3t');
      expect(out).not.toContain(INLINE);
    }
  });

  it('refuses a variable that is not set: exit 2 naming it, nothing created', async () => {
    const dir = tempDir();
    const list = join(dir, 'list.txt');
    await import('node:fs/promises').then((fs) => fs.writeFile(list, `${origin.url}/x\n`));
    const run = await fanout(['fetch', list, '--data-dir', join(dir, 'data'), '--header-env', 'authorization=PARTNER_TEST_UNSET'], {});
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--header-env authorization=PARTNER_TEST_UNSET: environment variable PARTNER_TEST_UNSET is not set');
    expect(existsSync(join(dir, 'data'))).toBe(false);
    // Not a variable name at all: said so, not "is not set".
    const bad = await fanout(['fetch', list, '--data-dir', join(dir, 'data'), '--header-env', 'authorization=MY-TOKEN'], {});
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"MY-TOKEN" is not an environment variable name');
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });
});

describe('the API', () => {
  let runtime: EmbeddedRuntime;
  let app: ReturnType<typeof createApp>;
  beforeAll(() => {
    process.env.PARTNER_TEST_API_TOK = SECRET;
    runtime = new EmbeddedRuntime({ dataDir: tempDir(), guard: new AddressGuard({ blockPrivate: false }) });
    runtime.start();
    app = createApp({
      store: runtime.store,
      queue: runtime.queue,
      token: () => undefined,
      uploads: { receivesPut: false, target: async () => ({ url: '', method: 'PUT', headers: {}, expiresAt: null }) },
      cancel: (id) => runtime.cancel(id),
      // As `fanout serve` does: its workers share this process's environment.
      checkOptions: (options) => checkHeaderEnv(options.headerEnv),
    });
  });
  afterAll(async () => {
    delete process.env.PARTNER_TEST_API_TOK;
    await runtime.stop();
  });

  const call = (method: string, path: string, body?: string) =>
    app.request(`http://127.0.0.1${path}`, { method, body, headers: body ? { 'content-type': 'application/json' } : {} });

  it('redacts inline credential headers in GET /jobs and GET /jobs/:id, while the worker sends them and headerEnv values', async () => {
    const before = origin.seen.length;
    const other0 = other.seen.length;
    const options = { headers: { Authorization: `Basic ${INLINE}`, 'X-Trace': 'visible' }, headerEnv: { 'x-api-key': 'PARTNER_TEST_API_TOK' } };
    const res = await call('POST', '/jobs', JSON.stringify({ urls: [`${origin.url}/p`, `${origin.url}/away`], options }));
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    let status: Record<string, unknown> = {};
    for (let i = 0; i < 200 && status.state !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      status = (await (await call('GET', `/jobs/${jobId}`)).json()) as Record<string, unknown>;
    }
    expect(status.state).toBe('completed');
    const seen = origin.seen.slice(before);
    expect(seen.map((h) => [h.authorization, h['x-api-key'], h['x-trace']])).toEqual([
      [`Basic ${INLINE}`, SECRET, 'visible'],
      [`Basic ${INLINE}`, SECRET, 'visible'],
    ]);
    // The redirect to another origin carries neither the inline credential nor the headerEnv value.
    expect(other.seen.slice(other0).map((h) => [h.authorization, h['x-api-key'], h['x-trace']])).toEqual([[undefined, undefined, 'visible']]);

    expect((status.options as { headers: Record<string, string> }).headers).toEqual({ Authorization: '***', 'X-Trace': 'visible' });
    const bodies = [
      JSON.stringify(status),
      await (await call('GET', '/jobs')).text(),
      await (await call('GET', `/jobs/${jobId}/results`)).text(),
    ];
    for (const text of bodies) {
      expect(text).not.toContain(INLINE);
      expect(text).not.toContain('s3cr3t');
    }
    expect(bodies[1]).toContain('"Authorization":"***"');
  });

  it('refuses at submission a headerEnv variable the server does not have', async () => {
    const res = await call('POST', '/jobs', JSON.stringify({ urls: [`${origin.url}/p`], options: { headerEnv: { authorization: 'PARTNER_TEST_NOT_THERE' } } }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { detail: string }).detail).toContain('environment variable PARTNER_TEST_NOT_THERE is not set');
  });
});

describe('jobs of API users keep the server rules', () => {
  it('`fanout serve` with FANOUT_HEADER_ENV_VARS unset exposes no variable: an API user cannot have the operator\'s token or HTTPS_PROXY password sent', async () => {
    const saved = { ...process.env };
    process.env.PARTNER_TEST_OPERATOR_TOKEN = 'ghp_operator_secret';
    process.env.HTTPS_PROXY = 'http://opuser:operator-proxy-pw@127.0.0.1:9/';
    delete process.env.FANOUT_HEADER_ENV_VARS;
    const server = await startServer({ host: '127.0.0.1', port: 0, dataDir: tempDir(), workers: 0, guard: new AddressGuard({ blockPrivate: false }), token: 'api-token' });
    try {
      const submit = (headerEnv: Record<string, string>) =>
        fetch(`${server.url}/jobs`, {
          method: 'POST',
          headers: { authorization: 'Bearer api-token', 'content-type': 'application/json' },
          body: JSON.stringify({ urls: [`${origin.url}/steal`], options: { headerEnv } }),
        });
      for (const variable of ['PARTNER_TEST_OPERATOR_TOKEN', 'HTTPS_PROXY', 'HOME', 'PARTNER_TEST_SURELY_NOT_SET']) {
        const res = await submit({ 'x-a': variable });
        expect(res.status, variable).toBe(400);
        // The same answer whether the operator has the variable or not.
        expect(((await res.json()) as { detail: string }).detail).toContain(`${variable} cannot be used: the operator exposes no variable to jobs (FANOUT_HEADER_ENV_VARS)`);
      }
    } finally {
      await server.close();
      process.env = saved;
    }
  });

  it('`fanout resume` of a job an API user submitted keeps serve\'s rules: the address guard, and proxy credentials only for FANOUT_PROXY_AUTH_FOR', async () => {
    const seen: IncomingHttpHeaders[] = [];
    // The API user's own "proxy": it keeps every Proxy-Authorization it is sent.
    const own = createServer((req, res) => (seen.push(req.headers), res.end('ok')));
    await new Promise<void>((r) => own.listen(0, '127.0.0.1', r));
    const ownUrl = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
    try {
      const dataDir = join(tempDir(), 'data');
      const input = await openInput(Readable.from([`${origin.url}/resumed\n`]));
      // As `fanout serve` stores an API user's job (source "api"), left unfinished.
      const job = await planJob(new LocalStore(dataDir), new MemoryQueue(), { input, options: { proxy: ownUrl, retries: 0 }, source: 'api' });
      const env = { FANOUT_PROXY_AUTH: 'opuser:operator-proxy-pw', FANOUT_PROXY_AUTH_FOR: 'http://proxy.operator.example:3128', FANOUT_ALLOW_CIDRS: '' };
      // serve's guard: the loopback "proxy" is a private address, blocked.
      const blocked = await fanout(['resume', job.jobId, '--data-dir', dataDir, '--quiet', '--json'], { env });
      expect(blocked.code).toBe(0);
      expect(JSON.parse(blocked.stdout)).toMatchObject({ byError: { blocked: 1 } });
      expect(seen).toHaveLength(0);
      // Allowed by the operator, it is reached, without the credentials meant for the operator's proxy.
      // (This one came through an upload.)
      const job2 = await planJob(new LocalStore(dataDir), new MemoryQueue(), { input: await openInput(Readable.from([`${origin.url}/resumed2\n`])), options: { proxy: ownUrl, retries: 0 }, source: 'upload:0190c0de-0000-7000-8000-000000000000' });
      const reached = await fanout(['resume', job2.jobId, '--data-dir', dataDir, '--quiet', '--json'], { env: { ...env, FANOUT_ALLOW_CIDRS: '127.0.0.1/32' } });
      expect(reached.code).toBe(0);
      expect(seen).toHaveLength(1);
      expect(seen[0]!['proxy-authorization']).toBeUndefined();
    } finally {
      own.close();
    }
  }, 60_000);

  it("the operator's own list named `api` stays the operator's: stored as ./api, resumed as fetch ran it (its --header-env, private origins)", async () => {
    const held: import('node:http').ServerResponse[] = [];
    let hang = true; // /hang answers only once the first run is interrupted
    const local = createServer((req, res) => (req.url === '/hang' && hang ? void held.push(res) : res.end('ok')));
    await new Promise<void>((r) => local.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(local.address() as AddressInfo).port}`;
    try {
      const cwd = tempDir();
      const dataDir = join(cwd, 'data');
      writeFileSync(join(cwd, 'api'), `${url}/hang\n${url}/b\n`);
      const env = { MY_TOKEN: 'Bearer operator-own', FANOUT_ALLOW_CIDRS: '' };
      const first = await spawnFanout(['fetch', 'api', '--data-dir', dataDir, '--header-env', 'authorization=MY_TOKEN', '--retries', '0', '--workers', '1'], { cwd, env });
      await until(() => held.length === 1, 20_000, 'the /hang request');
      const jobId = /job (\S+):/.exec(first.stderr())![1]!;
      first.child.kill('SIGINT');
      expect((await first.done).code).toBe(130);
      for (const res of held) res.destroy();
      hang = false;
      expect(JSON.parse(readFileSync(join(dataDir, 'jobs', jobId, 'job.json'), 'utf8'))).toMatchObject({ source: './api' });
      const resumed = await fanout(['resume', jobId, '--data-dir', dataDir, '--quiet', '--json'], { cwd, env });
      expect(resumed.code, resumed.stderr).toBe(0);
      // Under serve's rules the loopback origin would be blocked and MY_TOKEN refused.
      expect(JSON.parse(resumed.stdout)).toMatchObject({ state: 'completed', total: 2, succeeded: 2 });
    } finally {
      local.closeAllConnections();
      local.close();
    }
  }, 60_000);

  it('completion callbacks of API jobs run by `fanout resume` or a local `fanout cancel` are signed as serve signs them', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const receiver = createServer((req, res) => (seen.push(req.headers), req.resume(), req.on('end', () => res.end('ok'))));
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    try {
      const env = { FANOUT_CALLBACK_SECRET: 'operator-callback-secret', FANOUT_ALLOW_CIDRS: '127.0.0.1/32' };
      for (const command of ['resume', 'cancel']) {
        const dataDir = join(tempDir(), 'data');
        const input = await openInput(Readable.from([`${url}/page\n`]));
        const job = await planJob(new LocalStore(dataDir), new MemoryQueue(), { input, options: { callbackUrl: `${url}/callback`, retries: 0 }, source: 'api' });
        expect((await fanout([command, job.jobId, '--data-dir', dataDir], { env })).code, command).toBe(0);
        await until(() => seen.some((h) => h['x-fanout-job'] === job.jobId), 10_000, `the callback after ${command}`);
        expect(seen.find((h) => h['x-fanout-job'] === job.jobId)!['x-fanout-signature'], command).toMatch(/^sha256=[0-9a-f]{64}$/);
      }
    } finally {
      receiver.closeAllConnections();
      receiver.close();
    }
  }, 60_000);
});

