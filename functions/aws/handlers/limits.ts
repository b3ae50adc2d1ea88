/** Limits of the AWS runtime, stated once (each can be lowered through the environment, e.g. in tests). */

function fromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value >= 0 && process.env[name] !== '' && process.env[name] !== undefined ? value : fallback;
}

/**
 * Stored lists larger than this are planned in slices by the worker function: the API answers
 * within API Gateway's 30 s, and no single invocation reads a ten-million-line list.
 */
export const planInSlicesAboveBytes = () => fromEnv('FANOUT_PLAN_IN_SLICES_ABOVE_BYTES', 4 * 1024 * 1024);

/**
 * A Lambda response (through API Gateway) carries at most 6 MB; result sets whose gzip files
 * exceed this are answered with presigned S3 URLs instead of a stream (NDJSON inflates ~5-10x).
 */
export const inlineResultsMaxGzipBytes = () => fromEnv('FANOUT_INLINE_RESULTS_MAX_BYTES', 512 * 1024);

/** How long presigned URLs (uploads, result files) stay valid. */
export const PRESIGN_SECONDS = 3600;
