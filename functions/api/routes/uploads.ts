/**
 * /uploads: for lists too large for one request. POST makes an upload slot and says where to PUT
 * the list (a presigned S3 URL on AWS, this app locally); POST /jobs {"upload": ID} then plans it.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { v7 as uuidv7 } from 'uuid';
import { layout } from '../../core/layout.ts';
import { checkUploadOpen, createUploadSlot } from '../../core/uploads.ts';
import type { ApiDeps } from '../deps.ts';
import { API_LIMITS } from '../deps.ts';
import { problem } from '../problem.ts';
import { Problem, Upload, problemResponses } from '../schemas.ts';
import { validationHook } from '../validation.ts';

const createUploadRoute = createRoute({
  method: 'post',
  path: '/uploads',
  summary: 'Make an upload slot for a large list',
  description:
    'The slot plans one job: its list is deleted once the job is planned or the list refused (upload again then). Slots expire 24 h after they are made (see expiresAt); the embedded runtime allows 100 pending slots (429 beyond).',
  responses: {
    201: { description: 'Where to PUT the list', content: { 'application/json': { schema: Upload } } },
    429: { description: 'Too many pending uploads (embedded runtime)', content: { 'application/problem+json': { schema: Problem } } },
    ...problemResponses,
  },
});

class UploadTooLarge extends Error {}

/**
 * The request body as it arrives, stopped once it passes `max` bytes. Hono's bodyLimit buffers a
 * body sent without Content-Length (chunked) whole before the handler sees it: a 600 MB upload
 * then took 1.3 GB. Here the body goes to the store as it streams, and memory stays flat.
 */
async function* limitedBody(body: ReadableStream<Uint8Array> | null, max: number): AsyncGenerator<Uint8Array> {
  if (!body) return;
  let size = 0;
  for await (const chunk of Readable.fromWeb(body as unknown as WebReadableStream<Uint8Array>) as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > max) throw new UploadTooLarge();
    yield chunk;
  }
}

export function uploadsRoutes(deps: ApiDeps): OpenAPIHono {
  const app = new OpenAPIHono({ defaultHook: validationHook });
  const maxUploadBytes = deps.limits?.maxUploadBytes ?? API_LIMITS.maxUploadBytes;

  app.openapi(createUploadRoute, async (c) => {
    const uploadId = uuidv7();
    const expiresAt = await createUploadSlot(deps.store, uploadId, { maxPending: deps.uploads.maxPending });
    const target = await deps.uploads.target(uploadId, new URL(c.req.url));
    return c.json({ uploadId, ...target, expiresAt: target.expiresAt ?? expiresAt.toISOString() }, 201);
  });

  if (deps.uploads.receivesPut) {
    app.openAPIRegistry.registerPath({
      method: 'put',
      path: '/uploads/{id}',
      summary: 'Send the list for an upload slot (embedded runtime; on AWS the list goes to S3 directly)',
      request: { params: z.object({ id: z.string() }), body: { content: { 'text/plain': { schema: z.string() } } } },
      responses: {
        204: { description: 'Received' },
        409: { description: 'Already received, submitted or expired', content: { 'application/problem+json': { schema: Problem } } },
        413: { description: 'Larger than the upload limit', content: { 'application/problem+json': { schema: Problem } } },
        ...problemResponses,
      },
    });
    app.put('/uploads/:id', async (c) => {
      const id = c.req.param('id');
      const tooLarge = () => problem(413, 'Payload too large', `an upload may hold at most ${maxUploadBytes} bytes`);
      if (Number(c.req.header('content-length') ?? 0) > maxUploadBytes) throw tooLarge();
      await checkUploadOpen(deps.store, id); // 404 for no slot, 409 once submitted or expired
      let created: boolean;
      try {
        created = await deps.store.put(layout.uploadList(id), limitedBody(c.req.raw.body, maxUploadBytes), { ifAbsent: true, contentType: 'text/plain' });
      } catch (error) {
        if (error instanceof UploadTooLarge) throw tooLarge();
        throw error;
      }
      if (!created) throw problem(409, 'Conflict', `upload ${id} was already received`);
      return c.body(null, 204);
    });
  }
  return app;
}
