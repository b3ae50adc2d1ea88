/**
 * AWS-shaped events for driving the Lambda handlers in tests: API Gateway HTTP API (v2) and
 * Function URL requests, SQS batches built from messages received off a queue, EventBridge
 * Scheduler payloads, and a Lambda context with a clock.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, Context, SQSEvent, SQSRecord } from 'aws-lambda';
import type { ReceivedMessage } from '../../functions/core/ports.ts';

export function httpApiEvent(
  method: string,
  pathWithQuery: string,
  options: { body?: string; headers?: Record<string, string>; functionUrl?: boolean } = {},
): APIGatewayProxyEventV2 {
  const [path, query = ''] = pathWithQuery.split('?') as [string, string?];
  const domainName = options.functionUrl ? 'abcdefghij.lambda-url.us-east-1.on.aws' : 'abc123.execute-api.us-east-1.amazonaws.com';
  const headers = { host: domainName, ...(options.headers ?? {}) };
  return {
    version: '2.0',
    routeKey: options.functionUrl ? '$default' : '$default',
    rawPath: path,
    rawQueryString: query,
    headers,
    queryStringParameters: query ? Object.fromEntries(new URLSearchParams(query)) : undefined,
    requestContext: {
      accountId: options.functionUrl ? 'anonymous' : '123456789012',
      apiId: options.functionUrl ? 'abcdefghij' : 'abc123',
      domainName,
      domainPrefix: domainName.split('.')[0]!,
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'test' },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    body: options.body,
    isBase64Encoded: false,
  };
}

export function sqsRecord(message: ReceivedMessage, eventSourceARN: string): SQSRecord {
  return {
    messageId: message.id,
    receiptHandle: message.receipt,
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(message.receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDAEXAMPLE',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(message.body).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN,
    awsRegion: 'us-east-1',
  };
}

export function sqsEvent(messages: ReceivedMessage[], eventSourceARN: string): SQSEvent {
  return { Records: messages.map((m) => sqsRecord(m, eventSourceARN)) };
}

/** A Lambda context whose deadline is `remainingMs` from now. */
export function lambdaContext(remainingMs = 900_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'fanout-worker',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:fanout-worker',
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/fanout-worker',
    logStreamName: 'test',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}
