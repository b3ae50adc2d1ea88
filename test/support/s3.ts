/** s3rver, a real S3 HTTP endpoint on loopback, with one bucket. */
import type { AddressInfo } from 'node:net';
import S3rver from 's3rver';
import { tempDir } from './tmp.ts';

export interface FakeS3 {
  endpoint: string;
  bucket: string;
  close(): Promise<void>;
}

export async function startS3(bucket = 'fanout-test'): Promise<FakeS3> {
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: tempDir('fanout-s3-'),
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const address = (await server.run()) as unknown as AddressInfo;
  return { endpoint: `http://127.0.0.1:${address.port}`, bucket, close: () => server.close() };
}

/** Environment that points the AWS SDK and fanout's handlers at fake S3 and SQS endpoints. */
export function awsTestEnv(s3: FakeS3, sqsEndpoint: string, queueUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ENDPOINT_URL_SQS: sqsEndpoint,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    FANOUT_S3_FORCE_PATH_STYLE: '1',
    FANOUT_BUCKET: s3.bucket,
    FANOUT_QUEUE_URL: queueUrl,
    ...extra,
  };
}
