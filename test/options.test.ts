import { describe, expect, it } from 'vitest';
import { OptionsError } from '../functions/core/errors.ts';
import { DEFAULT_OPTIONS, parseJobOptions } from '../functions/core/options.ts';
import { VERSION } from '../functions/core/version.ts';
import pkg from '../package.json' with { type: 'json' };

describe('job options', () => {
  it('has the contract defaults', () => {
    expect(DEFAULT_OPTIONS).toMatchObject({
      concurrency: 64,
      perHost: 8,
      timeoutMs: 15_000,
      retries: 2,
      maxRedirects: 5,
      method: 'GET',
      headers: {},
      body: null,
      bodies: 'inline',
      maxBodyBytes: 1_048_576,
      chunkSize: 500,
      userAgent: `fanout/${pkg.version}`,
      callbackUrl: null,
    });
    expect(VERSION).toBe(pkg.version);
  });

  it.each([
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurrency: 1.5 }, 'concurrency'],
    [{ timeoutMs: '100' }, 'timeoutMs'],
    [{ bodies: 'some' }, 'bodies'],
    [{ chunkSize: 100_000 }, 'chunkSize'],
    [{ method: 'GET /' }, 'method'],
    [{ headers: { 'bad name': 'x' } }, 'headers.bad name'],
    [{ headers: { x: 'a\nb' } }, 'headers.x'],
    [{ callbackUrl: 'ftp://x.test/' }, 'callbackUrl'],
  ])('refuses %j naming %s', (input, field) => {
    try {
      parseJobOptions(input);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(OptionsError);
      expect((e as OptionsError).field).toBe(field);
      expect((e as OptionsError).message).toContain(`option "${field}"`);
    }
  });

  it('refuses unknown options by name', () => {
    expect(() => parseJobOptions({ concurency: 3 })).toThrow('unknown option "concurency"');
  });

  it('upper-cases methods', () => {
    expect(parseJobOptions({ method: 'post' }).method).toBe('POST');
  });
});
