/**
 * Job options: every default is stated here, once. The CLI flags, the HTTP API and job.json all
 * go through {@link parseJobOptions}, so a value is validated the same way wherever it comes from.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { OptionsError } from './errors.ts';
import { VERSION } from './version.ts';

export const BODY_MODES = ['none', 'inline', 'store'] as const;
export type BodyMode = (typeof BODY_MODES)[number];

const MiB = 1024 * 1024;

/** Header names and values may not smuggle CR/LF (header injection) or NUL. */
const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'not a valid header name');
const headerValue = z.string().regex(/^[^\r\n\0]*$/, 'header values may not contain CR, LF or NUL');
export const headersSchema = z.record(headerName, headerValue);

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

export const methodSchema = z
  .string()
  .regex(/^[A-Za-z]+$/, 'not an HTTP method')
  .transform((m) => m.toUpperCase())
  .refine((m) => !['CONNECT', 'TRACE'].includes(m), 'CONNECT and TRACE are not allowed');

export const jobOptionsSchema = z
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
  })
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
  if (parsed.success) return parsed.data;
  throw OptionsError.fromZod(parsed.error);
}
