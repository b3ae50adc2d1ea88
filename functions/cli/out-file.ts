/**
 * `--out`: a job's records written as its chunks complete, in input order, so the file grows while
 * the job runs (a chunk is written once every chunk before it is). Streamed: a chunk's records are
 * never held whole.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { layout } from '../core/layout.ts';
import { recordsToCsv, type OutFormat } from './out-csv.ts';
import type { ObjectStore } from '../core/ports.ts';

/** --out defaults, stated once: how often the next chunk is looked for while the job runs. */
export const OUT_DEFAULTS = { pollMs: 250 } as const;

export class OutFile {
  private next = 0;
  private stopped = false;
  private readonly following: Promise<void>;
  /** Where the NDJSON goes: the file, or the CSV converter in front of it. */
  private readonly target: Writable;
  private readonly file: Writable;

  /**
   * Starts following a job of `chunks` chunks into `path` (`-` for stdout), as NDJSON or CSV.
   *
   * @example
   * const out = new OutFile(store, jobId, job.chunks, 'records.ndjson');
   * await runtime.waitForJob(jobId);
   * await out.finish();
   */
  constructor(
    private readonly store: ObjectStore,
    private readonly jobId: string,
    private readonly chunks: number,
    readonly path: string,
    private readonly pollMs: number = OUT_DEFAULTS.pollMs,
    readonly format: OutFormat = 'ndjson',
  ) {
    this.file = path === '-' ? process.stdout : createWriteStream(path);
    // A write that fails later (the disk fills up) ends this writer, reported by finish(), not a crash.
    if (path !== '-') this.file.on('error', (error) => (this.failure ??= error));
    this.target = this.file;
    if (format === 'csv') {
      this.target = recordsToCsv();
      this.target.pipe(this.file, { end: path !== '-' });
    }
    this.following = this.follow();
    this.following.catch(() => {}); // surfaced by finish()
  }

  /** The file's write error, if one happened. */
  private failure: Error | undefined;

  private async follow(): Promise<void> {
    while (!this.stopped) {
      await this.flush();
      if (!this.stopped) await sleep(this.pollMs);
    }
  }

  /** Writes every chunk that is done and follows the ones written so far. */
  private async flush(): Promise<void> {
    while (this.next < this.chunks && (await this.store.exists(layout.chunkDone(this.jobId, this.next)))) {
      const stream = await this.store.getStream(layout.results(this.jobId, this.next));
      if (stream) {
        // Written by hand rather than piped: a pipeline per chunk would leave listeners on the file.
        for await (const bytes of stream.pipe(createGunzip())) {
          if (!this.target.write(bytes)) await once(this.target, 'drain');
        }
      }
      this.next++;
    }
  }

  /** Once the job has ended: writes the rest and closes the file. */
  async finish(): Promise<void> {
    this.stopped = true;
    await this.following;
    if (this.failure) throw this.failure;
    await this.flush();
    if (this.target !== this.file) {
      // The CSV converter flushes its last row on end, then ends the file (not stdout).
      const piped = this.path === '-' ? once(this.target, 'end') : once(this.file, 'finish');
      this.target.end();
      await piped;
      return;
    }
    if (this.path !== '-') await new Promise<void>((resolve, reject) => this.target.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
}
