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

describe('options that could never be sent or held (issue 14 items 7 and 9)', () => {
  function refusal(input: Record<string, unknown>): OptionsError {
    try {
      parseJobOptions(input);
    } catch (e) {
      expect(e).toBeInstanceOf(OptionsError);
      return e as OptionsError;
    }
    throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  }

  it.each(['Transfer-Encoding', 'upgrade', 'Expect', 'connection', 'keep-alive', 'TE', 'trailer', 'Host', 'proxy-connection'])(
    'refuses the header %s, naming it',
    (name) => {
      const e = refusal({ headers: { [name]: 'x' } });
      expect(e.field).toBe(`headers.${name}`);
      expect(e.message).toMatch(new RegExp(`header "${name}" cannot be set`));
    },
  );

  it.each(['a\u0001b', 'a\u007fb', 'a\u001bb', 'a\rb'])('refuses control characters in header values (%j)', (value) => {
    expect(refusal({ headers: { 'x-k': value } }).field).toBe('headers.x-k');
  });

  it('refuses header values a request cannot carry (past Latin-1), naming the header', () => {
    expect(refusal({ headers: { 'x-a': '€uro' } })).toMatchObject({ field: 'headers.x-a' });
    expect(parseJobOptions({ headers: { 'x-a': 'café' } }).headers['x-a']).toBe('café');
  });

  it('accepts tabs and ordinary values', () => {
    expect(parseJobOptions({ headers: { 'x-k': 'a\tb c', accept: 'text/html' } }).headers).toEqual({ 'x-k': 'a\tb c', accept: 'text/html' });
  });

  it('refuses a content-length that does not match the body, accepts one that does', () => {
    expect(refusal({ method: 'POST', body: 'abcd', headers: { 'Content-Length': '3' } }).field).toBe('headers.content-length');
    expect(refusal({ headers: { 'content-length': 'ten' } }).field).toBe('headers.content-length');
    expect(parseJobOptions({ method: 'POST', body: 'é', headers: { 'content-length': '2' } }).body).toBe('é');
  });

  it('refuses concurrency x maxBodyBytes above 512 MiB when bodies are kept, naming both', () => {
    const e = refusal({ concurrency: 10_000, maxBodyBytes: 256 * 1024 * 1024, bodies: 'store' });
    expect(e.message).toMatch(/option "concurrency" x option "maxBodyBytes"/);
    expect(e.field).toBe('maxBodyBytes');
    expect(refusal({ concurrency: 1_000 }).message).toMatch(/536870912/); // with the default 1 MiB inline
    expect(parseJobOptions({ concurrency: 512 }).concurrency).toBe(512);
    expect(parseJobOptions({ concurrency: 10_000, bodies: 'none' }).concurrency).toBe(10_000);
  });

  it('caps maxBodyBytes at 32 MiB with inline bodies', () => {
    const e = refusal({ concurrency: 1, maxBodyBytes: 64 * 1024 * 1024 });
    expect(e.field).toBe('maxBodyBytes');
    expect(e.message).toMatch(/bodies" inline/);
    expect(parseJobOptions({ concurrency: 1, maxBodyBytes: 64 * 1024 * 1024, bodies: 'store' }).maxBodyBytes).toBe(64 * 1024 * 1024);
  });
});
