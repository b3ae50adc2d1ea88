/**
 * What the HTTP app needs from the runtime it is mounted in. The embedded runtime and the AWS
 * handler each provide these; the app itself knows neither.
 */
import type { ObjectStore, Queue } from '../core/ports.ts';
import type { JobOptions } from '../core/options.ts';
import type { Schedule } from '../core/schedules.ts';
import type { TokenSource } from './auth.ts';

export interface UploadTarget {
  /** Where and how the client sends the list for an upload id. */
  target(uploadId: string, requestUrl: URL): Promise<{ url: string; method: 'PUT'; headers: Record<string, string>; expiresAt: string | null }>;
  /** True when the app itself receives the PUT (the embedded runtime); false for presigned S3 URLs. */
  readonly receivesPut: boolean;
  /** Upload slots that may wait (not yet submitted) at once; unset: unbounded (AWS, where S3 holds them). */
  readonly maxPending?: number;
}

export interface ApiDeps {
  store: ObjectStore;
  queue: Queue;
  token: TokenSource;
  uploads: UploadTarget;
  /** Cancels a job in this runtime (the embedded runtime also aborts its in-flight requests). */
  cancel(jobId: string): Promise<boolean>;
  limits?: Partial<ApiLimits>;
  /**
   * Uploads larger than this are planned in slices by the workers (a `plan` message) instead of
   * in the request; unset, every upload is planned in the request (the embedded runtime).
   */
  planInSlicesAboveBytes?: number;
  /**
   * Set by a runtime whose calls are cut off (API Gateway's 29 s): POST /jobs plans for at most this
   * long (from the request's start) and hands the rest to the workers (`state: "planning"`), and a
   * GET /jobs page ends early once it is spent. Unset, POST /jobs plans everything in the request.
   */
  budgetMs?: number;
  /**
   * Set by a runtime whose responses are bounded (a Lambda's 6 MB): every results response is then
   * a page of at most this many records and bytes. Unset, a request without `cursor` or `limit`
   * streams every record (`fanout serve`), and pages use RESULT_PAGE_DEFAULTS.
   */
  resultPages?: { maxRecords: number; maxBytes: number; maxLinks?: number };
  /** Links to the result files themselves (presigned S3 URLs on AWS), for jobs too large to page through. */
  resultFiles?: ResultFileLinks;
  /**
   * Checks options against what this runtime's workers can do (on AWS: one attempt must fit in the
   * worker function's timeout).
   *
   * @throws {OptionsError} naming the field.
   */
  checkOptions?(options: JobOptions): void;
  /**
   * The schedules this runtime runs (`fanout serve --schedules`; on AWS the file in
   * FANOUT_SCHEDULES_JSON), and when each fires next if the runtime keeps timers.
   */
  schedules?(): { schedules: Schedule[]; nextRuns?: Record<string, string | null> };
}

export interface ResultFileLinks {
  /** A URL that downloads the object without the API's token. */
  sign(key: string): Promise<string>;
  /** When URLs signed now stop working (ISO 8601). */
  expiresAt(): string;
  /** True when a job's results are large enough to answer with links even unasked. */
  prefer(jobId: string): Promise<boolean>;
}

/** One page of the links form of GET /jobs/:id/results. */
export interface ResultLinks {
  jobId: string;
  /** Gzipped NDJSON files, in input order; the files of every page, concatenated, are every record. */
  format: 'ndjson.gz';
  files: { key: string; url: string; chunk: number }[];
  expiresAt: string;
  /** Cursor of the next page of links, or null on the last. */
  next: string | null;
}

/** Request size limits, stated once. */
export interface ApiLimits {
  /** Largest POST /jobs body; bigger lists go through POST /uploads. */
  maxRequestBytes: number;
  /** Largest upload received by the app itself. */
  maxUploadBytes: number;
}

export const API_LIMITS: ApiLimits = {
  maxRequestBytes: 10 * 1024 * 1024,
  maxUploadBytes: 2 * 1024 * 1024 * 1024,
};
