/**
 * What the HTTP app needs from the runtime it is mounted in. The embedded runtime and the AWS
 * handler each provide these; the app itself knows neither.
 */
import type { ObjectStore, Queue } from '../core/ports.ts';
import type { TokenSource } from './auth.ts';

export interface UploadTarget {
  /** Where and how the client sends the list for an upload id. */
  target(uploadId: string, requestUrl: URL): Promise<{ url: string; method: 'PUT'; headers: Record<string, string>; expiresAt: string | null }>;
  /** True when the app itself receives the PUT (the embedded runtime); false for presigned S3 URLs. */
  readonly receivesPut: boolean;
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
   * Results too large for the runtime's responses (a Lambda's 6 MB) are answered with links to the
   * result files instead: return the links document, or null to stream as usual.
   */
  resultLinks?(jobId: string, force: boolean): Promise<ResultLinks | null>;
}

export interface ResultLinks {
  jobId: string;
  /** Gzipped NDJSON files, in input order; concatenated they are every record. */
  format: 'ndjson.gz';
  files: { key: string; url: string }[];
  expiresAt: string;
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
