/**
 * A small client of the fanout HTTP API (local `fanout serve` or the deployed one), used by
 * `fanout submit|status|results|cancel|jobs`. API problems become errors carrying their status,
 * so the CLI exits 2 on a 4xx with the API's own detail.
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { request } from 'undici';
import { FanoutError } from '../core/errors.ts';
import type { FetchRecord } from '../core/record.ts';
import { recordFilter, type RecordQuery } from '../core/results.ts';
import type { RunsPage } from '../core/runs.ts';
import type { ScheduleInfo } from '../core/schedules.ts';
import type { JobStatus } from '../core/status.ts';

/** An answer of the API that is not a success. */
export class ApiError extends FanoutError {
  override name = 'ApiError';
  override readonly status: number;
  override readonly title: string;
  constructor(status: number, title: string, detail: string) {
    super(detail);
    this.status = status;
    this.title = title;
  }
}

export interface ClientConfig {
  api: string;
  token?: string;
}

/** --api, else FANOUT_API, else the local default; --token, else FANOUT_TOKEN. */
export function clientConfig(flags: { api?: string; token?: string }): ClientConfig {
  return {
    api: (flags.api || process.env.FANOUT_API || 'http://127.0.0.1:8787').replace(/\/+$/, ''),
    token: flags.token || process.env.FANOUT_TOKEN || undefined,
  };
}

export class FanoutClient {
  constructor(private readonly config: ClientConfig) {}

  /**
   * The bearer token goes to the API's own origin only: an upload URL (a presigned S3 URL on AWS)
   * or a result-file link is another party, and a token sent there would leak.
   */
  private authFor(url: string): Record<string, string> {
    if (!this.config.token) return {};
    return sameOrigin(url, this.config.api) ? { authorization: `Bearer ${this.config.token}` } : {};
  }

  private async call(method: string, path: string, body?: string | Readable, headers: Record<string, string> = {}) {
    const url = /^https?:/i.test(path) ? path : `${this.config.api}${path}`;
    const auth = this.authFor(url);
    let res;
    try {
      res = await request(url, { method: method as 'GET', body, headers: { ...auth, ...headers } });
    } catch (error) {
      throw new Error(`cannot reach ${this.config.api}: ${(error as Error).message}`);
    }
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      let title = `HTTP ${res.statusCode}`;
      let detail = text.slice(0, 500);
      try {
        const problem = JSON.parse(text) as { title?: string; detail?: string };
        title = problem.title ?? title;
        detail = problem.detail ?? detail;
      } catch {
        // not problem+json: keep the text
      }
      throw new ApiError(res.statusCode, title, detail);
    }
    return res;
  }

  private async json<T>(method: string, path: string, body?: string | Readable, headers?: Record<string, string>): Promise<T> {
    const res = await this.call(method, path, body, headers);
    return (await res.body.json()) as T;
  }

  submit(body: string | Readable, contentType: string, query: URLSearchParams) {
    const q = query.toString();
    return this.json<{ jobId: string; status: string; total: number | null; chunks: number | null; state?: 'planning' | 'queued' }>('POST', `/jobs${q ? `?${q}` : ''}`, body, {
      'content-type': contentType,
    });
  }

  /** Large lists: an upload slot, the list PUT there, then a job from it. */
  async submitUpload(body: Readable, size: number, format: string, options: Record<string, unknown>, urlColumn?: string) {
    const upload = await this.json<{ uploadId: string; url: string; headers: Record<string, string> }>('POST', '/uploads');
    // With its length: S3 answers a chunked PUT to a presigned URL with 501 NotImplemented.
    const put = await this.call('PUT', upload.url, body, { ...upload.headers, 'content-length': String(size) });
    await put.body.dump();
    return this.json<{ jobId: string; status: string; total: number | null; chunks: number | null; state?: 'planning' | 'queued' }>(
      'POST',
      '/jobs',
      JSON.stringify({ upload: upload.uploadId, format, ...(urlColumn !== undefined ? { urlColumn } : {}), options }),
      { 'content-type': 'application/json' },
    );
  }

  status(jobId: string) {
    return this.json<JobStatus>('GET', `/jobs/${encodeURIComponent(jobId)}`);
  }

  cancel(jobId: string) {
    return this.json<JobStatus>('DELETE', `/jobs/${encodeURIComponent(jobId)}`);
  }

  schedules() {
    return this.json<{ schedules: ScheduleInfo[] }>('GET', '/schedules');
  }

  runs(name: string, limit: number, cursor?: string) {
    const q = new URLSearchParams({ limit: String(limit), ...(cursor ? { cursor } : {}) });
    return this.json<RunsPage>('GET', `/schedules/${encodeURIComponent(name)}/runs?${q}`);
  }

  jobs(limit: number, cursor?: string) {
    const q = new URLSearchParams({ limit: String(limit), ...(cursor ? { cursor } : {}) });
    return this.json<{ jobs: JobStatus[]; next: string | null }>('GET', `/jobs?${q}`);
  }

  /**
   * Every record as NDJSON, in input order. Pages are followed (the `Fanout-Next-Cursor` or Link
   * header); when the API answers with pages of links to the gzipped result files (AWS, large
   * jobs), the files are downloaded (without the token) and decompressed in order, filters applied here.
   * The first page is asked for at once, so an API error surfaces before any record.
   */
  async results(jobId: string, filters: URLSearchParams): Promise<Readable> {
    const path = `/jobs/${encodeURIComponent(jobId)}/results`;
    const pageOf = (cursor: string | null) => {
      const q = new URLSearchParams(filters);
      if (cursor !== null) q.set('cursor', cursor);
      const text = q.toString();
      return this.call('GET', `${path}${text ? `?${text}` : ''}`);
    };
    const filter = recordFilter(Object.fromEntries(filters) as RecordQuery);
    const keep = (line: string) => !filter || filter(JSON.parse(line) as FetchRecord);
    const first = await pageOf(null);
    return Readable.from(
      (async function* () {
        const seen = new Set<string>();
        for (let res: Awaited<ReturnType<typeof pageOf>> | null = first; res; ) {
          let next = nextCursor(res.headers);
          if (String(res.headers['content-type'] ?? '').startsWith('application/json')) {
            const links = (await res.body.json()) as { files: { url: string }[]; next?: string | null };
            next = links.next ?? next;
            for (const file of links.files) {
              const part = await request(file.url);
              if (part.statusCode !== 200) {
                await part.body.dump();
                throw new Error(`result file download failed: HTTP ${part.statusCode}`);
              }
              const lines = createInterface({ input: part.body.pipe(createGunzip()), crlfDelay: Infinity });
              for await (const line of lines) if (line !== '' && keep(line)) yield line + '\n';
            }
          } else {
            yield* res.body as AsyncIterable<Buffer>;
          }
          if (next === null) break;
          if (seen.has(next)) throw new Error(`the API gave the same results cursor twice (${next}): stopping`);
          seen.add(next);
          res = await pageOf(next);
        }
      })(),
    );
  }
}

/** The cursor of the next page: the Fanout-Next-Cursor header, else the `cursor` of the Link rel="next". */
export function nextCursor(headers: Record<string, string | string[] | undefined>): string | null {
  const direct = headers['fanout-next-cursor'];
  if (typeof direct === 'string' && direct !== '') return direct;
  const link = headers['link'];
  const text = Array.isArray(link) ? link.join(', ') : link;
  const match = text ? /<([^>]*)>\s*;\s*rel="?next"?/i.exec(text) : null;
  if (!match) return null;
  return new URL(match[1]!, 'http://relative.invalid').searchParams.get('cursor');
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}
