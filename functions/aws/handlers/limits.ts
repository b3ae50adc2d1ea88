/** Limits of the AWS runtime, stated once (each can be lowered through the environment, e.g. in tests). */
import { RESULT_PAGE_DEFAULTS } from '../../core/results.ts';

function fromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value >= 0 && process.env[name] !== '' && process.env[name] !== undefined ? value : fallback;
}

const MiB = 1024 * 1024;

/**
 * Stored lists larger than this are planned in slices by the worker function: the API answers
 * within API Gateway's 30 s, and no single invocation reads a ten-million-line list.
 */
export const planInSlicesAboveBytes = () => fromEnv('FANOUT_PLAN_IN_SLICES_ABOVE_BYTES', 4 * MiB);

/**
 * Time a POST /jobs call (and a schedule run) spends planning before it hands the rest to the
 * workers and answers `planning`; a GET /jobs page ends after half of it. Well under API Gateway's
 * 29 s, leaving room for the last writes in flight, the hand-on message and a cold start.
 */
export const apiBudgetMs = () => fromEnv('FANOUT_API_BUDGET_MS', 20_000);

/**
 * Largest POST /jobs body on AWS: a Lambda request carries 6 MB, and a text body may arrive
 * base64-encoded (4/3 larger). Larger lists go through POST /uploads (`fanout submit` switches at
 * the same size).
 */
export const maxRequestBytes = () => fromEnv('FANOUT_MAX_REQUEST_BYTES', 4 * MiB);

/**
 * Result sets whose gzip files exceed this are answered with pages of presigned S3 URLs unasked
 * (records inflate ~5-10x, and paging through them costs a request per page).
 */
export const inlineResultsMaxGzipBytes = () => fromEnv('FANOUT_INLINE_RESULTS_MAX_BYTES', 512 * 1024);

/** Every results response on AWS is a page of at most this many records and bytes (see RESULT_PAGE_DEFAULTS). */
export const resultPageLimits = () => ({
  maxRecords: fromEnv('FANOUT_RESULT_PAGE_MAX_RECORDS', RESULT_PAGE_DEFAULTS.maxRecords),
  maxBytes: fromEnv('FANOUT_RESULT_PAGE_MAX_BYTES', RESULT_PAGE_DEFAULTS.maxBytes),
  maxLinks: fromEnv('FANOUT_RESULT_PAGE_MAX_LINKS', RESULT_PAGE_DEFAULTS.maxLinks),
});


/** How long presigned URLs (uploads, result files) stay valid. */
export const PRESIGN_SECONDS = 3600;
