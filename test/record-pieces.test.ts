/**
 * Large records are written in pieces (issue 14 item 7): the pieces must join to exactly the line
 * JSON.stringify makes, whatever the body holds; kept bodies are gathered without a join at the end.
 */
import { describe, expect, it } from 'vitest';
import { recordPieces } from '../functions/core/chunk-writer.ts';
import { BodyBuffer } from '../functions/core/engine/body-buffer.ts';
import { isoTimestamp, makeRecord, serializeRecord, type FetchRecord } from '../functions/core/record.ts';

const base = {
  index: 3, url: 'http://a.test/', id: 'x', ok: true, status: 200, finalUrl: 'http://a.test/', redirects: [], headers: { 'content-type': 'text/plain' },
  bytes: 1, truncated: false, sha256: null, attempts: 1, durationMs: 1, error: null, fetchedAt: '2026-01-01T00:00:00.000Z',
} as unknown as FetchRecord;

describe('recordPieces', () => {
  const slice = 1024 * 1024;
  const bodies: [string, string, 'utf8' | 'base64'][] = [
    ['ASCII', 'a'.repeat(slice * 2 + 5), 'utf8'],
    ['quotes, newlines and control characters', '"\n\\\u0000\u001f'.repeat(slice / 2), 'utf8'],
    ['a surrogate pair across the slice boundary', 'a'.repeat(slice - 1) + '😀' + 'b'.repeat(10), 'utf8'],
    ['base64', 'QUJD'.repeat(slice / 2), 'base64'],
  ];
  it.each(bodies)('%s: the pieces join to the serialized line', (_name, body, bodyEncoding) => {
    const record = makeRecord(base, { body, bodyEncoding });
    const joined = [...recordPieces(record)].join('');
    expect(joined === serializeRecord(record)).toBe(true);
    expect(JSON.parse(joined).body === body).toBe(true);
  });
});

describe('BodyBuffer', () => {
  it('gathers chunks in one buffer sized from the announced length, or grown, never past the cut', () => {
    const announced = new BodyBuffer(100);
    announced.expect(6);
    announced.push(Buffer.from('abc'));
    announced.push(Buffer.from('def'));
    expect(announced.take().toString()).toBe('abcdef');

    const grown = new BodyBuffer(200_000);
    const parts = Array.from({ length: 5 }, (_, i) => Buffer.alloc(30_000, 97 + i));
    for (const part of parts) grown.push(part);
    expect(grown.take().equals(Buffer.concat(parts))).toBe(true);

    const lied = new BodyBuffer(1 << 20);
    lied.expect(1 << 20); // announced 1 MiB, sent 2 bytes: only 2 bytes are kept
    lied.push(Buffer.from('ok'));
    const kept = lied.take();
    expect(kept.toString()).toBe('ok');
    expect(kept.buffer.byteLength).toBeLessThan(1 << 20);
    expect(new BodyBuffer(10).take().length).toBe(0);
  });
});

describe('isoTimestamp', () => {
  it('is toISOString, also across seconds, years and the rare wide years', () => {
    const samples = [0, 999, 1000, 1001, Date.UTC(2026, 10, 26, 11, 29, 44, 7), Date.UTC(2026, 10, 26, 11, 29, 44, 70), Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1), -1, -1000, 253402300800000, 253402300799999];
    for (let i = 0; i < 5000; i++) samples.push(Math.floor(1.7e12 + i * 123.457));
    for (const ms of samples) expect(isoTimestamp(ms), String(ms)).toBe(new Date(ms).toISOString());
  });
});
