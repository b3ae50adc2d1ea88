/**
 * The ObjectStore on S3 (or an S3-compatible store). Create-if-absent is S3's conditional write
 * (`If-None-Match: *`, on PutObject and on CompleteMultipartUpload); streamed bodies go up as
 * multipart uploads through lib-storage, so a large result file is never held whole.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  paginateListObjectsV2,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import type { Body, ObjectStore } from '../core/ports.ts';

/** S3 store settings, stated once. */
export const S3_DEFAULTS = {
  /** Multipart part size: S3's minimum, so a streamed upload buffers at most this per part in flight. */
  partSize: 5 * 1024 * 1024,
  /** Parts uploaded at once per object. */
  queueSize: 2,
  /** DeleteObjects takes at most this many keys. */
  deleteBatch: 1000,
} as const;

function statusOf(error: unknown): number | undefined {
  return error instanceof S3ServiceException ? error.$metadata.httpStatusCode : (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isMissing(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(error) === 404;
}

/**
 * S3 client options from the environment: the SDK's own resolution, plus path style on request.
 * Checksums only where S3 requires them: otherwise presigned PUT URLs embed a checksum of an empty
 * body, and S3-compatible stores store streamed bodies with their aws-chunked framing.
 */
export function s3ClientConfig(env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  return {
    forcePathStyle: env.FANOUT_S3_FORCE_PATH_STYLE === '1' || env.FANOUT_S3_FORCE_PATH_STYLE === 'true',
    requestChecksumCalculation: env.AWS_REQUEST_CHECKSUM_CALCULATION === 'WHEN_SUPPORTED' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
    responseChecksumValidation: env.AWS_RESPONSE_CHECKSUM_VALIDATION === 'WHEN_SUPPORTED' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
  };
}

export class S3Store implements ObjectStore {
  constructor(
    readonly client: S3Client,
    readonly bucket: string,
  ) {}

  async put(key: string, body: Body, options: { ifAbsent?: boolean; contentType?: string } = {}): Promise<boolean> {
    const streamed = !(typeof body === 'string' || body instanceof Uint8Array);
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: streamed ? (body instanceof Readable ? body : Readable.from(body)) : body,
        ContentType: options.contentType,
        ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}),
      },
      partSize: S3_DEFAULTS.partSize,
      queueSize: S3_DEFAULTS.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
      return true;
    } catch (error) {
      // 412: the key exists. 409: another conditional write of the key is in progress; S3 lets one win.
      if (options.ifAbsent && (statusOf(error) === 412 || statusOf(error) === 409)) return false;
      throw error;
    }
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async getStream(key: string, options: { start?: number } = {}): Promise<Readable | null> {
    try {
      const range = options.start ? `bytes=${options.start}-` : undefined;
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }));
      return res.Body as Readable;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.size(key)) !== null;
  }

  async size(key: string): Promise<number | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return res.ContentLength ?? 0;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<string> {
    const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: prefix, StartAfter: options.startAfter });
    for await (const page of pages) for (const object of page.Contents ?? []) if (object.Key) yield object.Key;
  }

  /** Sizes of the objects under a prefix, keyed by key (to size result sets without reading them). */
  async sizes(prefix: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: prefix });
    for await (const page of pages) for (const object of page.Contents ?? []) if (object.Key) out.set(object.Key, object.Size ?? 0);
    return out;
  }

  async listPrefixes(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
      );
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) out.push(p.Prefix);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  async delete(key: string): Promise<void> {
    await this.deleteKeys([key]);
  }

  async deletePrefix(prefix: string): Promise<void> {
    let batch: string[] = [];
    for await (const key of this.list(prefix)) {
      batch.push(key);
      if (batch.length === S3_DEFAULTS.deleteBatch) {
        await this.deleteKeys(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.deleteKeys(batch);
  }

  private async deleteKeys(keys: string[]): Promise<void> {
    const res = await this.client.send(
      new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
    );
    const failed = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
    if (failed.length > 0) throw new Error(`could not delete ${failed.length} objects, first ${failed[0]!.Key}: ${failed[0]!.Message}`);
  }
}
