/**
 * The API function: the same Hono app as `fanout serve`, through hono/aws-lambda (HTTP API v2 and
 * Function URL events). The token comes from Secrets Manager; uploads go straight to S3 through
 * presigned URLs; large lists are planned in slices by the workers; results are answered in pages
 * that fit a Lambda response, or as pages of presigned links to their files when they are large.
 */
import { GetObjectCommand, PutObjectCommand, paginateListObjectsV2 } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { defaultIsContentTypeBinary, handle } from 'hono/aws-lambda';
import { createApp } from '../../api/app.ts';
import type { ResultFileLinks, UploadTarget } from '../../api/deps.ts';
import { cancelJob } from '../../core/cancel.ts';
import { CONTINUATION_DEFAULTS } from '../../core/continuation.ts';
import { OptionsError } from '../../core/errors.ts';
import { layout } from '../../core/layout.ts';
import type { JobOptions } from '../../core/options.ts';
import { PRESIGN_SECONDS, awsLimits, awsRuntime, maxJobTimeoutMs, workerTimeoutSeconds, type AwsRuntime } from '../environment.ts';
import { parseSchedules, type Schedule } from '../../core/schedules.ts';
import { checkHeaderEnv } from '../../core/header-env.ts';

let schedulesCache: { text: string; schedules: Schedule[] } | undefined;

/** The schedules file the stack passed in FANOUT_SCHEDULES_JSON (parsed once per container). */
function loadedSchedules(rt: AwsRuntime): Schedule[] {
  const text = rt.env.FANOUT_SCHEDULES_JSON;
  if (!text) return [];
  if (schedulesCache?.text !== text) schedulesCache = { text, schedules: parseSchedules(text) };
  return schedulesCache.schedules;
}
import { awsTokenSource } from '../token.ts';

function s3Uploads(rt: AwsRuntime): UploadTarget {
  return {
    receivesPut: false,
    async target(uploadId) {
      const command = new PutObjectCommand({ Bucket: rt.store.bucket, Key: layout.uploadList(uploadId), ContentType: 'text/plain' });
      return {
        url: await getSignedUrl(rt.store.client, command, { expiresIn: PRESIGN_SECONDS }),
        method: 'PUT',
        headers: { 'content-type': 'text/plain' },
        expiresAt: new Date(Date.now() + PRESIGN_SECONDS * 1000).toISOString(),
      };
    },
  };
}

function s3ResultFiles(rt: AwsRuntime): ResultFileLinks {
  return {
    sign: (key) => getSignedUrl(rt.store.client, new GetObjectCommand({ Bucket: rt.store.bucket, Key: key }), { expiresIn: PRESIGN_SECONDS }),
    expiresAt: () => new Date(Date.now() + PRESIGN_SECONDS * 1000).toISOString(),
    async prefer(jobId) {
      // Sums the files' sizes until the threshold is passed: one LIST for most jobs, however large.
      const threshold = awsLimits().FANOUT_INLINE_RESULTS_MAX_BYTES;
      let total = 0;
      const pages = paginateListObjectsV2({ client: rt.store.client }, { Bucket: rt.store.bucket, Prefix: layout.resultsPrefix(jobId) });
      for await (const page of pages) {
        for (const object of page.Contents ?? []) total += object.Size ?? 0;
        if (total > threshold) return true;
      }
      return false;
    },
  };
}

/**
 * Refuses options whose single attempt cannot finish inside one worker invocation: such a chunk
 * would hand itself on forever instead of fetching.
 *
 * @throws {OptionsError} naming timeoutMs.
 */
export function checkWorkerTime(options: JobOptions, workerSeconds: number = workerTimeoutSeconds()): void {
  const budgetMs = maxJobTimeoutMs(workerSeconds);
  if (options.timeoutMs > budgetMs) {
    throw new OptionsError(
      `option "timeoutMs": ${options.timeoutMs} ms cannot fit in a worker invocation: the worker function runs ${workerSeconds} s, ` +
        `of which ${(2 * CONTINUATION_DEFAULTS.marginMs) / 1000} s are kept for starting and handing on, so at most ${Math.max(0, budgetMs)} ms`,
      'timeoutMs',
    );
  }
}

/** Builds the app over this container's runtime (exported for tests). */
export function createAwsApp(rt: AwsRuntime = awsRuntime()) {
  const limits = awsLimits();
  return createApp({
    store: rt.store,
    queue: rt.queue,
    token: awsTokenSource(rt.env),
    uploads: s3Uploads(rt),
    cancel: async (jobId) => (await cancelJob(rt.store, jobId, { ledger: rt.ledger, queue: rt.queue })).cancelled,
    planInSlicesAboveBytes: limits.FANOUT_PLAN_IN_SLICES_ABOVE_BYTES,
    budgetMs: limits.FANOUT_API_BUDGET_MS,
    limits: { maxRequestBytes: limits.FANOUT_MAX_REQUEST_BYTES },
    resultPages: { maxRecords: limits.FANOUT_RESULT_PAGE_MAX_RECORDS, maxBytes: limits.FANOUT_RESULT_PAGE_MAX_BYTES, maxLinks: limits.FANOUT_RESULT_PAGE_MAX_LINKS },
    resultFiles: s3ResultFiles(rt),
    checkOptions: (options) => {
      checkWorkerTime(options);
      // Names only: the values live with the worker (the stack's headerSecrets, listed in FANOUT_HEADER_ENV_VARS).
      checkHeaderEnv(options.headerEnv, process.env, false);
    },
    schedules: () => ({ schedules: loadedSchedules(rt) }),
  });
}

/**
 * NDJSON goes out as text, not base64 (which the adapter applies to any type it does not know as
 * text): a page's size is then its JSON-escaped size, which the pages are measured by.
 */
export const isContentTypeBinary = (contentType: string): boolean =>
  !/^application\/(x-)?ndjson\s*(;|$)/i.test(contentType) && defaultIsContentTypeBinary(contentType);

let lambda: ReturnType<typeof handle> | undefined;

/** The Lambda handler (HTTP API v2 or Function URL events); the app is built on first use. */
export const handler: ReturnType<typeof handle> = (event, context) => {
  lambda ??= handle(createAwsApp(), { isContentTypeBinary });
  return lambda(event, context);
};
