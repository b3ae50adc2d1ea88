/**
 * The streaming reader (fanout fetch, serve) and the sliced planner (large uploads on AWS) name the
 * same bad line with the same line and column, whatever starts the line (found by an attack: a BOM
 * at the start of a later line, a no-break space before the first).
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { openInput } from '../functions/core/input.ts';
import { parseJobOptions } from '../functions/core/options.ts';
import { planSlice, startPlanning } from '../functions/core/plan-slices.ts';
import { LocalStore } from '../functions/local/local-store.ts';
import { MemoryQueue } from '../functions/local/memory-queue.ts';
import { tempDir } from './support/tmp.ts';

async function streamed(text: string): Promise<string> {
  try {
    const input = await openInput(Readable.from([text]));
    for await (const _ of input.items);
    return 'accepted';
  } catch (e) {
    return (e as Error).message;
  }
}

let n = 0;
async function sliced(text: string): Promise<string> {
  const store = new LocalStore(tempDir('fanout-slice-'));
  const id = (0xa0 + n++).toString(16).padStart(12, '0');
  const list = `uploads/0190c5f0-0000-7000-8000-${id}/list`;
  await store.put(list, text);
  const jobId = `0190c5f0-0000-7000-8000-${id}`;
  const queue = new MemoryQueue();
  await startPlanning(store, queue, { jobId, createdAt: new Date().toISOString(), options: parseJobOptions({}), source: 'test', list }, 'auto');
  const [message] = await queue.receive({ max: 1 });
  const outcome = await planSlice(store, queue, message!.body);
  return outcome.kind === 'rejected' ? outcome.rejection.message : 'accepted';
}

describe('the same bad line, streamed and sliced', () => {
  const lists = {
    'a BOM at the start of line 2 (two files with BOMs concatenated)': '{"url": "http://203.0.113.7/1"}\n\uFEFF{"url": "http://203.0.113.7/2",}\n',
    'a BOM then spaces on line 2': '{"url": "http://203.0.113.7/1"}\n\uFEFF  {"url": "http://203.0.113.7/2",}\n',
    'no-break spaces on line 2': '{"url": "http://203.0.113.7/1"}\n\u00a0\u00a0{"url": "http://203.0.113.7/2",}\n',
    'CRLF and a tab': '{"url": "http://203.0.113.7/1"}\r\n\t{"url": "http://203.0.113.7/2",}\r\n',
    'a line over 1 MiB on line 3': '{"url": "http://203.0.113.7/1"}\n{"url": "http://203.0.113.7/2"}\n{"url": "http://203.0.113.7/3", "x": "' + 'y'.repeat(1_100_000) + '"}\n',
    'text, a line over 1 MiB on line 2': 'http://203.0.113.7/1\nhttp://203.0.113.7/' + 'y'.repeat(1_100_000) + '\n',
    'text, U+3000 before a bad URL on line 2': 'http://203.0.113.7/1\n\u3000http://203.0.113.7/a b\n',
    'no-break space before a bad first line': '\u00a0{"url": "http://203.0.113.7/1",}\n{"url": "http://203.0.113.7/2"}\n',
  };
  for (const [name, text] of Object.entries(lists)) {
    it(name, async () => {
      const said = await streamed(text);
      expect(said).toMatch(/^line \d+: /); // every list here has a bad line
      expect(await sliced(text)).toBe(said);
    });
  }
});

describe('a JSON document whose first line starts with a no-break space', () => {
  it('is read (as NDJSON and text lines so indented are)', async () => {
    expect(await streamed('\u00a0{"urls": ["http://203.0.113.7/1"]}\n')).toBe('accepted');
  });
});
