/**
 * The embedded ObjectStore: a folder laid out like the S3 bucket. Writes go to a temporary file
 * and are renamed (or hard-linked, for create-if-absent) into place, so a reader never sees half an
 * object and a crash never leaves one. Keys are checked so none can escape the folder.
 */
import { createWriteStream, rmSync } from 'node:fs';
import { link, mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidKeyError } from '../core/errors.ts';
import type { Body, ObjectStore } from '../core/ports.ts';

/** Segments are plain names: no "." or ".." (nor any name starting with a dot), no separators. */
const SEGMENT = /^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$/;
const MAX_KEY_LENGTH = 1024;
/** Not a valid key segment, so it never shows up in listings. */
const TMP_DIR = '.tmp';

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Hard-links `path` to the file at `source`; false when `path` exists (atomic: create-if-absent). */
async function linkIfAbsent(source: string, path: string): Promise<boolean> {
  try {
    await link(source, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

export class LocalStore implements ObjectStore {
  readonly root: string;
  /** Folders known to exist: one mkdir per folder, not one per write. */
  private readonly folders = new Set<string>();

  constructor(root: string) {
    this.root = resolve(root);
  }

  /**
   * Removes the temporary files under a store folder (writes a killed process never finished).
   * Only safe while no other process writes there: call it holding the folder's lock (lock.ts).
   *
   * @example
   * LocalStore.removeTemporaryFiles('./fanout-data');
   */
  static removeTemporaryFiles(root: string): void {
    rmSync(join(resolve(root), TMP_DIR), { recursive: true, force: true });
  }

  /** The file behind a key; throws {@link InvalidKeyError} for any key that is not plain segments. */
  pathOf(key: string): string {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || !key.split('/').every((s) => SEGMENT.test(s))) {
      throw new InvalidKeyError(key);
    }
    const path = join(this.root, key);
    if (!path.startsWith(this.root + sep)) throw new InvalidKeyError(key);
    return path;
  }

  private prefixPath(prefix: string): string {
    return prefix === '' ? this.root : this.pathOf(prefix.replace(/\/$/, ''));
  }

  async put(key: string, body: Body, options: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const path = this.pathOf(key);
    const tmpDir = join(this.root, TMP_DIR);
    const tmp = join(tmpDir, randomUUID());
    let renamed = false;
    await this.folder(tmpDir);
    try {
      if (typeof body === 'string' || body instanceof Uint8Array) {
        await writeFile(tmp, body).catch(async (error) => {
          if (!isMissing(error)) throw error;
          // The folder went (another handle cleared .tmp at start): make it again, once.
          this.folders.delete(tmpDir);
          await this.folder(tmpDir);
          await writeFile(tmp, body);
        });
      } else {
        await pipeline(body instanceof Readable ? body : Readable.from(body), createWriteStream(tmp));
      }
      await this.folder(dirname(path));
      if (!options.ifAbsent) {
        await rename(tmp, path);
        renamed = true;
        return true;
      }
      return await linkIfAbsent(tmp, path);
    } finally {
      // A renamed file left nothing behind (one syscall fewer per file: planning writes one per chunk).
      if (!renamed) await unlink(tmp).catch(() => {});
    }
  }

  async copyIfAbsent(from: string, to: string): Promise<boolean> {
    const source = this.pathOf(from);
    const path = this.pathOf(to);
    await this.folder(dirname(path));
    return linkIfAbsent(source, path);
  }

  private async folder(path: string): Promise<void> {
    if (this.folders.has(path)) return;
    await mkdir(path, { recursive: true });
    if (this.folders.size > 10_000) this.folders.clear();
    this.folders.add(path);
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      return await readFile(this.pathOf(key));
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async getStream(key: string, options: { start?: number } = {}): Promise<Readable | null> {
    try {
      const handle = await open(this.pathOf(key), 'r');
      return handle.createReadStream({ autoClose: true, start: options.start });
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.size(key)) !== null;
  }

  async size(key: string): Promise<number | null> {
    try {
      const info = await stat(this.pathOf(key));
      return info.isFile() ? info.size : null;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<string> {
    const slash = prefix.lastIndexOf('/');
    const dirKey = prefix.slice(0, slash + 1);
    for await (const key of this.walk(dirKey)) {
      if (!key.startsWith(prefix)) {
        if (key > prefix) return; // sorted: nothing further can match
        continue;
      }
      if (options.startAfter !== undefined && key <= options.startAfter) continue;
      yield key;
    }
  }

  /** Every key under a folder, in S3's order (plain byte order of the whole key). */
  private async *walk(dirKey: string): AsyncGenerator<string> {
    let entries;
    try {
      entries = await readdir(this.prefixPath(dirKey), { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    // Sorting folders as "name/" makes the walk's order the order of the full keys.
    const named = entries
      .filter((e) => SEGMENT.test(e.name) && (e.isDirectory() || e.isFile()))
      .map((e) => ({ key: dirKey + e.name + (e.isDirectory() ? '/' : ''), dir: e.isDirectory() }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const entry of named) {
      if (entry.dir) yield* this.walk(entry.key);
      else yield entry.key;
    }
  }

  async listPrefixes(prefix: string): Promise<string[]> {
    try {
      const entries = await readdir(this.prefixPath(prefix), { withFileTypes: true });
      return entries
        .filter((e) => e.isDirectory() && SEGMENT.test(e.name))
        .map((e) => `${prefix}${e.name}/`)
        .sort();
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await unlink(this.pathOf(key)).catch((error) => {
      if (!isMissing(error)) throw error;
    });
  }

  async deletePrefix(prefix: string): Promise<void> {
    // Folders under the prefix may go with the keys: they are made again when next written to.
    const under = this.prefixPath(prefix.endsWith('/') ? prefix : prefix.slice(0, prefix.lastIndexOf('/') + 1));
    for (const folder of this.folders) if (folder === under || folder.startsWith(under + sep)) this.folders.delete(folder);
    if (prefix.endsWith('/')) {
      await rm(this.prefixPath(prefix), { recursive: true, force: true });
      return;
    }
    for await (const key of this.list(prefix)) await this.delete(key);
  }
}
