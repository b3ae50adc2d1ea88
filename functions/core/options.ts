/**
 * Job options: every default is stated here, once. The CLI flags, the HTTP API and job.json all
 * go through {@link parseJobOptions}, so a value is validated the same way wherever it comes from.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { proxyUrlProblem } from './engine/proxy-url.ts';
import { OptionsError } from './errors.ts';
import { ENV_VAR_NAME, RESERVED_VARIABLE } from './header-env.ts';
import { VERSION } from './version.ts';

export const BODY_MODES = ['none', 'inline', 'store'] as const;
export type BodyMode = (typeof BODY_MODES)[number];

const MiB = 1024 * 1024;

/**
 * Headers an item may never set, with why: the HTTP client frames the message and manages the
 * connection itself, so these would fail every request later instead of the submission now.
 */
export const UNSENDABLE_HEADERS: Readonly<Record<string, string>> = {
  'transfer-encoding': 'the body is framed by fanout',
  upgrade: 'fanout does not switch protocols',
  expect: 'fanout sends bodies without waiting for 100 Continue',
  connection: 'connections are managed by fanout',
  'keep-alive': 'connections are managed by fanout',
  'proxy-connection': 'connections are managed by fanout',
  te: 'fanout chooses the transfer codings it accepts',
  trailer: 'fanout sends no trailers',
  host: 'the host comes from the URL',
};

/** Header names and values may not smuggle CR/LF (header injection), NUL or other control characters. */
const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'not a valid header name');
const headerValue = z
  .string()
  .regex(/^[^\x00-\x08\x0a-\x1f\x7f]*$/, 'header values may not contain CR, LF, NUL or other control characters (tab aside)')
  // A header carries bytes: characters past U+00FF cannot be sent (percent-encode them, or use RFC 8187's
  // ext-value), and undici would fail every record of the job later.
  .regex(/^[\x00-\xff]*$/, 'header values may hold Latin-1 characters only (percent-encode others)');
export const headersSchema = z.record(headerName, headerValue).superRefine((headers, ctx) => {
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    const why = UNSENDABLE_HEADERS[lower];
    if (why !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: `header "${name}" cannot be set: ${why}` });
    else if (lower === 'content-length' && !/^\d{1,15}$/.test(value.trim())) {
      ctx.addIssue({ code: 'custom', path: [name], message: 'content-length must be a whole number of bytes' });
    }
  }
});

/**
 * A `content-length` header given with a body must be the body's size in bytes (UTF-8): a wrong
 * one makes every request fail.
 *
 * @returns the problem, or null when there is none (no header, or no body to compare with).
 * @example
 * contentLengthMismatch({ 'Content-Length': '3' }, 'abcd') // 'content-length 3 is not the body\'s 4 bytes'
 */
export function contentLengthMismatch(headers: Record<string, string> | undefined, body: string | null | undefined): string | null {
  if (!headers || body === undefined) return null;
  const entry = Object.entries(headers).find(([name]) => name.toLowerCase() === 'content-length');
  if (!entry) return null;
  const size = Buffer.byteLength(body ?? '', 'utf8');
  return Number(entry[1].trim()) === size ? null : `content-length ${entry[1].trim()} is not the body's ${size} bytes: leave it out, fanout sets it`;
}

/** What a worker can hold, stated once: bodies are kept in memory while their record is built. */
export const MEMORY_LIMITS = {
  /** `concurrency` x `maxBodyBytes` when bodies are kept (`inline` or `store`). */
  maxHeldBodyBytes: 512 * 1024 * 1024,
  /** `maxBodyBytes` with inline bodies: the record (a body base64- or JSON-escaped) must fit in a string. */
  maxInlineBodyBytes: 32 * 1024 * 1024,
} as const;

/** True when the text is one or more PEM certificates, each of which parses. */
function isPemCertificates(text: string): boolean {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) return false;
  try {
    for (const block of blocks) new X509Certificate(block);
    return true;
  } catch {
    return false;
  }
}

const envVarName = z.string().max(256).regex(ENV_VAR_NAME, 'not an environment variable name (letters, digits and _, not starting with a digit)');

/**
 * Header name -> environment variable: the worker sends the variable's value, read where it runs
 * (its process environment; on AWS also a Secrets Manager ARN held there). Only the names are stored.
 */
export const headerEnvSchema = z.record(headerName, envVarName).superRefine((entries, ctx) => {
  for (const [name, variable] of Object.entries(entries)) {
    const why = UNSENDABLE_HEADERS[name.toLowerCase()];
    if (why !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: `header "${name}" cannot be set: ${why}` });
    // fanout's and the platform's own variables (the API token, the worker's AWS credentials) never.
    if (RESERVED_VARIABLE.test(variable)) ctx.addIssue({ code: 'custom', path: [name], message: `environment variable ${variable} is fanout's or the platform's own configuration, never sent as a header` });
  }
});

export const methodSchema = z
  .string()
  .regex(/^[A-Za-z]+$/, 'not an HTTP method')
  .transform((m) => m.toUpperCase())
  .refine((m) => !['CONNECT', 'TRACE'].includes(m), 'CONNECT and TRACE are not allowed');

const optionFields = z
  .object({
    /** Requests in flight per worker. */
    concurrency: z.number().int().min(1).max(10_000).default(64),
    /** Connections per origin per worker. */
    perHost: z.number().int().min(1).max(1_000).default(8),
    /** Per attempt, from connect to the last body byte. */
    timeoutMs: z.number().int().min(1).max(600_000).default(15_000),
    /** Extra attempts on network errors, 429 and 5xx. */
    retries: z.number().int().min(0).max(10).default(2),
    /** First backoff delay; doubles each attempt, with full jitter. */
    retryBaseMs: z.number().int().min(0).max(60_000).default(250),
    /** Cap on any wait between attempts, Retry-After included. */
    retryMaxDelayMs: z.number().int().min(0).max(600_000).default(30_000),
    /** 0 returns the 3xx itself. */
    maxRedirects: z.number().int().min(0).max(50).default(5),
    method: methodSchema.default('GET'),
    headers: headersSchema.default({}),
    body: z.string().nullable().default(null),
    bodies: z.enum(BODY_MODES).default('inline'),
    /** Cut point for bodies, measured after decoding (so a decompression bomb is cut, not inflated). */
    maxBodyBytes: z.number().int().min(0).max(256 * MiB).default(MiB),
    /** Input lines per queue message. */
    chunkSize: z.number().int().min(1).max(10_000).default(500),
    userAgent: z.string().regex(/^[^\r\n\0]*$/, 'may not contain CR, LF or NUL').default(`fanout/${VERSION}`),
    /** POSTed the final status when the job ends. */
    callbackUrl: z
      .string()
      .url()
      .refine((u) => /^https?:/i.test(u), 'must be an http or https URL')
      .nullable()
      .default(null),
    /** Skip TLS certificate verification (self-signed or expired certificates, wrong names). */
    insecure: z.boolean().default(false),
    /** PEM certificates trusted in addition to the system's roots, e.g. a private CA. */
    ca: z
      .string()
      .max(MiB, 'at most 1 MiB of PEM text')
      .refine(isPemCertificates, 'expected PEM text of one or more certificates (-----BEGIN CERTIFICATE-----)')
      .nullable()
      .default(null),
    /**
     * Fetch each URL once: later lines of the same request (normalized URL, method, headers, body)
     * get a record with `duplicateOf` and no request.
     */
    dedupe: z.boolean().default(false),
    /**
     * HTTP proxy for every request of the job (http:// targets as absolute-form requests, https:// through
     * CONNECT). No credentials: the worker takes them from FANOUT_PROXY_AUTH.
     */
    proxy: z
      .string()
      .superRefine((url, ctx) => {
        const problem = proxyUrlProblem(url);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .nullable()
      .default(null),
    /** Offer HTTP/2 (ALPN h2) on TLS connections; servers that do not take it get HTTP/1.1. */
    http2: z.boolean().default(false),
    /** Requests started per second per origin, per worker (a token bucket per origin); null: no limit. */
    ratePerHost: z.number().min(0.01).max(10_000).nullable().default(null),
    /**
     * Headers whose values come from the worker's environment (header name -> variable name), so a
     * credential is never written to job.json, queue messages, records or API responses.
     */
    headerEnv: headerEnvSchema.default({}),
    /**
     * Job id of the baseline run: records then say what changed since it (`change`, `previous`), and
     * requests carry If-None-Match / If-Modified-Since from its ETag / Last-Modified.
     */
    since: z
      .string()
      .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'expected a job id')
      .nullable()
      .default(null),
  })
  .strict();

/**
 * One line of help per option, stated once: the CLI's help, the OpenAPI document (and so the
 * dashboard's form) read it from the schema's descriptions.
 */
export const OPTION_HELP: Record<keyof z.output<typeof optionFields>, string> = {
  concurrency: 'requests in flight per worker',
  perHost: 'connections per origin per worker',
  timeoutMs: 'per attempt, from the moment the request has a connection (connect included) to the last body byte; the wait for a free connection is not counted',
  retries: 'extra attempts on network errors, 429 and 5xx',
  retryBaseMs: 'first backoff delay, doubled each attempt, with jitter',
  retryMaxDelayMs: 'cap on any wait between attempts, Retry-After included',
  maxRedirects: 'redirects followed; 0 returns the 3xx itself',
  method: 'HTTP method',
  headers: 'request header "name: value" (repeatable)',
  body: 'request body',
  bodies: 'where bodies go: none counts their bytes only, inline keeps them in the record, store writes one object each',
  maxBodyBytes: 'cut point for bodies, after decoding',
  chunkSize: 'input lines per queue message',
  userAgent: 'User-Agent header',
  callbackUrl: 'POSTed the final status when the job ends',
  proxy: 'proxy for every request, http(s)://host:port; credentials from FANOUT_PROXY_AUTH=user:password (without it, fetch reads HTTP_PROXY, HTTPS_PROXY, NO_PROXY)',
  insecure: 'accept any TLS certificate',
  ca: 'PEM certificates trusted besides the system roots (the CLI takes a file: --ca FILE)',
  http2: 'offer HTTP/2 on TLS connections (the server chooses)',
  ratePerHost: 'requests started per second per origin, per worker (e.g. 5 or 0.5)',
  dedupe: 'fetch each distinct request once; later duplicates get a record with duplicateOf and no request',
  since: 'job id of the baseline: records say what changed since it',
  headerEnv: 'header from an environment variable "name=VARIABLE", resolved by the worker, never stored (repeatable); never a FANOUT_* or AWS_* variable, and in serve and on AWS only those in FANOUT_HEADER_ENV_VARS',
};

/** The options schema: every field with its range, default and help. */
export const jobOptionsSchema = z
  .object(
    Object.fromEntries(
      Object.entries(optionFields.shape).map(([name, field]) => [name, field.describe(OPTION_HELP[name as keyof typeof OPTION_HELP])]),
    ) as typeof optionFields.shape,
  )
  .strict();

export type JobOptions = z.output<typeof jobOptionsSchema>;
export type JobOptionsInput = z.input<typeof jobOptionsSchema>;

export const DEFAULT_OPTIONS: JobOptions = jobOptionsSchema.parse({});

/** Names of the options, for the CLI and for query-string parsing. */
export const OPTION_NAMES = Object.keys(jobOptionsSchema.shape) as (keyof JobOptions)[];

/**
 * Validates options from any source, filling defaults.
 *
 * @throws {OptionsError} naming the first offending field.
 * @example
 * parseJobOptions({ concurrency: 10 }).timeoutMs // 15000
 */
export function parseJobOptions(input: unknown): JobOptions {
  const parsed = jobOptionsSchema.safeParse(input ?? {});
  if (!parsed.success) throw OptionsError.fromZod(parsed.error);
  return checkOptionLimits(parsed.data);
}

/**
 * Checks what no single field's range can: the bodies a worker holds at once, the size of an inline
 * record, a content-length that disagrees with the body.
 *
 * @throws {OptionsError} naming the fields.
 */
export function checkOptionLimits(options: JobOptions): JobOptions {
  const { concurrency, maxBodyBytes, bodies } = options;
  if (bodies === 'inline' && maxBodyBytes > MEMORY_LIMITS.maxInlineBodyBytes) {
    throw new OptionsError(
      `option "maxBodyBytes": at most ${MEMORY_LIMITS.maxInlineBodyBytes} with option "bodies" inline (a record must fit in memory as one string): use bodies "store" for larger bodies`,
      'maxBodyBytes',
    );
  }
  if (bodies !== 'none' && concurrency * maxBodyBytes > MEMORY_LIMITS.maxHeldBodyBytes) {
    throw new OptionsError(
      `option "concurrency" x option "maxBodyBytes" (${concurrency} x ${maxBodyBytes}) may be at most ${MEMORY_LIMITS.maxHeldBodyBytes} bytes ` +
        `(${MEMORY_LIMITS.maxHeldBodyBytes / 1024 / 1024} MiB) when bodies are kept: lower either, or use bodies "none"`,
      'maxBodyBytes',
    );
  }
  const inline = new Set(Object.keys(options.headers).map((name) => name.toLowerCase()));
  const twice = Object.keys(options.headerEnv).find((name) => inline.has(name.toLowerCase()));
  if (twice !== undefined) {
    throw new OptionsError(`option "headerEnv.${twice}": header "${twice}" is also given in option "headers": give it once`, `headerEnv.${twice}`);
  }
  const mismatch = contentLengthMismatch(options.headers, options.body);
  if (mismatch) throw new OptionsError(`option "headers.content-length": ${mismatch}`, 'headers.content-length');
  return options;
}
