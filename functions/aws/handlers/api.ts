/**
 * The API function: the same Hono app as `fanout serve`, through hono/aws-lambda (HTTP API v2 and
 * Function URL events). The token comes from Secrets Manager; uploads go straight to S3 through
 * presigned URLs; large lists are planned in slices by the workers; result sets too large for a
 * Lambda response are answered with presigned links to their files.
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { handle } from 'hono/aws-lambda';
import { createApp } from '../../api/app.ts';
import type { ResultLinks, UploadTarget } from '../../api/deps.ts';
import { cancelJob } from '../../core/cancel.ts';
import { layout } from '../../core/layout.ts';
import { awsRuntime, type AwsRuntime } from '../environment.ts';
import { awsTokenSource } from '../token.ts';
import { PRESIGN_SECONDS, inlineResultsMaxGzipBytes, planInSlicesAboveBytes } from './limits.ts';

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

async function resultLinks(rt: AwsRuntime, jobId: string, force: boolean): Promise<ResultLinks | null> {
  const sizes = await rt.store.sizes(layout.resultsPrefix(jobId));
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  if (!force && total <= inlineResultsMaxGzipBytes()) return null;
  const keys = [...sizes.keys()].sort();
  const files = await Promise.all(
    keys.map(async (key) => ({
      key,
      url: await getSignedUrl(rt.store.client, new GetObjectCommand({ Bucket: rt.store.bucket, Key: key }), { expiresIn: PRESIGN_SECONDS }),
    })),
  );
  return { jobId, format: 'ndjson.gz', files, expiresAt: new Date(Date.now() + PRESIGN_SECONDS * 1000).toISOString() };
}

/** Builds the app over this container's runtime (exported for tests). */
export function createAwsApp(rt: AwsRuntime = awsRuntime()) {
  return createApp({
    store: rt.store,
    queue: rt.queue,
    token: awsTokenSource(rt.env),
    uploads: s3Uploads(rt),
    cancel: async (jobId) => (await cancelJob(rt.store, jobId, { ledger: rt.ledger, queue: rt.queue })).cancelled,
    planInSlicesAboveBytes: planInSlicesAboveBytes(),
    resultLinks: (jobId, force) => resultLinks(rt, jobId, force),
  });
}

let lambda: ReturnType<typeof handle> | undefined;

/** The Lambda handler (HTTP API v2 or Function URL events); the app is built on first use. */
export const handler: ReturnType<typeof handle> = (event, context) => {
  lambda ??= handle(createAwsApp());
  return lambda(event, context);
};
