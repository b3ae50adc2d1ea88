/**
 * What happens when a request's path or query fails its schema: a 400 problem naming the field.
 */
import type { Hook } from '@hono/zod-openapi';
import { problemResponse } from './problem.ts';

export const validationHook: Hook<any, any, any, any> = (result) => {
  if (result.success) return;
  const issue = result.error.issues[0]!;
  const field = issue.path.join('.');
  return problemResponse(400, 'Bad request', `${field ? `"${field}": ` : ''}${issue.message}`, { field });
};
