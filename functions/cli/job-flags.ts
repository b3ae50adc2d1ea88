/**
 * The job options as command-line flags, shared by `fanout fetch` and `fanout submit`, derived
 * from the options schema (functions/core/options.ts): each option's type, range, choices and
 * default come from there, so help and errors never restate them, and an option the schema gains
 * gets its flag (named after it: ratePerHost -> --rate-per-host) without a change here. Values are
 * converted here; validation is the schema's, so the CLI and the API refuse the same things.
 */
import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { z } from 'zod';
import { OptionsError, UsageError } from '../core/errors.ts';
import { jobOptionsSchema } from '../core/options.ts';

/**
 * What the schema cannot say: the contract's flag names where they differ from the option's name,
 * and the name of a flag's value. Each option's help is its description in the options schema.
 */
const FLAG_TEXT: Record<string, { flag?: string; value?: string }> = {
  method: { value: 'method' },
  headers: { flag: '--header', value: 'header' },
  body: { flag: '--data', value: 'body' },
  bodies: { value: 'mode' },
  userAgent: { value: 'ua' },
  callbackUrl: { value: 'url' },
  proxy: { value: 'url' },
  ca: { value: 'file' },
  ratePerHost: { value: 'rate' },
  since: { value: 'job-id' },
  headerEnv: { value: 'name=var' },
};

/** Options whose flag takes a file and passes its text. */
const FILE_OPTIONS = new Set(['ca']);

type Kind =
  | { type: 'number'; int: boolean; min: number; max: number }
  | { type: 'boolean' }
  | { type: 'enum'; values: string[] }
  | { type: 'string' }
  | { type: 'record' };

/** A job option as a flag. */
export interface JobFlag {
  option: string;
  flag: string;
  /** Where commander keeps the value (the flag in camelCase). */
  key: string;
  kind: Kind;
  /** The option's default, from the schema (undefined when it has none). */
  fallback: unknown;
  /** The schema's own description of the option, if it has one. */
  description?: string;
}

/** The schema of an option without its default, optional, nullable and transform wrappers. */
function unwrap(schema: z.ZodType): z.ZodType {
  let inner = schema as unknown as { def: { type: string; innerType?: unknown; in?: unknown } };
  while (inner.def.innerType || (inner.def.type === 'pipe' && inner.def.in)) {
    inner = (inner.def.innerType ?? inner.def.in) as typeof inner;
  }
  return inner as unknown as z.ZodType;
}

function kindOf(schema: z.ZodType): Kind | undefined {
  const base = unwrap(schema) as unknown as { def: { type: string }; minValue?: number | null; maxValue?: number | null; isInt?: boolean; options?: string[] };
  switch (base.def.type) {
    case 'number':
      return { type: 'number', int: base.isInt === true, min: base.minValue ?? -Infinity, max: base.maxValue ?? Infinity };
    case 'boolean':
      return { type: 'boolean' };
    case 'enum':
      return { type: 'enum', values: base.options ?? [] };
    case 'string':
      return { type: 'string' };
    case 'record':
      return { type: 'record' };
    default:
      return undefined; // no flag for shapes a command line cannot say
  }
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const camel = (flag: string) => flag.replace(/^--(no-)?/, '').replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** The options schema the flags come from: any zod object of options. */
export type OptionsSchema = z.ZodObject<z.ZodRawShape>;

/**
 * Every job option that has a flag, in the schema's order. A boolean that defaults to true is
 * turned off with `--no-NAME`.
 *
 * @example
 * jobFlags().find((f) => f.option === 'perHost') // { flag: '--per-host', key: 'perHost', kind: { type: 'number', ... }, fallback: 8 }
 */
export function jobFlags(schema: OptionsSchema = jobOptionsSchema as unknown as OptionsSchema): JobFlag[] {
  const flags: JobFlag[] = [];
  for (const [option, field] of Object.entries(schema.shape)) {
    const kind = kindOf(field as z.ZodType);
    if (!kind) continue;
    const parsed = (field as z.ZodType).safeParse(undefined);
    const fallback = parsed.success ? parsed.data : undefined;
    const name = FLAG_TEXT[option]?.flag ?? `--${kebab(option)}`;
    const flag = kind.type === 'boolean' && fallback === true ? `--no-${name.slice(2)}` : name;
    const description = (field as { description?: string }).description;
    flags.push({ option, flag, key: camel(flag), kind, fallback, ...(description ? { description } : {}) });
  }
  return flags;
}

/** Flag of each option, for messages. */
export function flagOf(option: string): string | undefined {
  return jobFlags().find((f) => f.option === option)?.flag;
}

/** "from 1 to 10000" for a range (or the side of it there is). */
function rangeText(min: number, max: number): string {
  if (Number.isFinite(min) && Number.isFinite(max)) return `from ${min} to ${max}`;
  if (Number.isFinite(min)) return `of at least ${min}`;
  return Number.isFinite(max) ? `of at most ${max}` : '';
}

/** A number flag's parser: the schema's range, said in the error. */
function numberParser(flag: string, kind: Extract<Kind, { type: 'number' }>) {
  const what = `${kind.int ? 'a whole number' : 'a number'} ${rangeText(kind.min, kind.max)}`.trim();
  return (value: string): number => {
    const text = value.trim();
    const n = Number(text);
    const shaped = kind.int ? /^-?\d+$/.test(text) : text !== '' && Number.isFinite(n);
    if (!shaped || n < kind.min || n > kind.max) throw new OptionsError(`${flag}: expected ${what}, got ${JSON.stringify(value)}`);
    return n;
  };
}

function decimal(flag: string) {
  return (value: string): number => {
    if (!/^(\d+\.?\d*|\.\d+)$/.test(value.trim())) throw new OptionsError(`${flag}: expected a number, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

/** A whole number within a range, for flags that are not job options (exit 2 otherwise). */
export function wholeNumber(flag: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** `--workers`: worker threads, by default one per core. */
export function workersOf(flag: string | undefined): number {
  return flag === undefined ? availableParallelism() : wholeNumber('--workers', flag, 1, 256);
}

/** `--header "name: value"` and other `--x "key=value"` maps, repeatable. */
function entryParser(flag: string, separator: ':' | '=') {
  return (value: string, previous: Record<string, string> = {}): Record<string, string> => {
    const at = value.indexOf(separator);
    if (at <= 0) throw new OptionsError(`${flag}: expected "name${separator === ':' ? ': ' : '='}value", got ${JSON.stringify(value)}`);
    return { ...previous, [value.slice(0, at).trim()]: value.slice(at + 1).trim() };
  };
}

function readText(flag: string) {
  return (file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new UsageError(`${flag}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
    }
  };
}

/** "default 64", from the schema; nothing for empty defaults. */
function defaultText(value: unknown): string {
  if (value === null || value === undefined || value === false || value === '') return '';
  if (typeof value === 'object' && Object.keys(value).length === 0) return '';
  return `default ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`;
}

/** The help line of a flag: what it does, then range or choices and default from the schema. */
export function flagHelp(flag: JobFlag): string {
  const text = flag.description ?? flag.option;
  if (flag.flag.startsWith('--no-')) return `turn off: ${text}`;
  const facts: string[] = [];
  if (flag.kind.type === 'number') facts.push(`${flag.kind.int ? 'whole number' : 'number'} ${rangeText(flag.kind.min, flag.kind.max)}`.trim());
  if (flag.kind.type === 'enum') facts.push(flag.kind.values.join(' | '));
  const fallback = defaultText(flag.fallback);
  if (fallback) facts.push(fallback);
  return facts.length > 0 ? `${text} (${facts.join('; ')})` : text;
}

/** Adds a flag for every job option to a command. */
export function addJobFlags(command: Command, schema?: OptionsSchema): Command {
  for (const flag of jobFlags(schema)) {
    const value = FLAG_TEXT[flag.option]?.value ?? (flag.kind.type === 'number' ? 'n' : 'value');
    const help = flagHelp(flag);
    if (flag.kind.type === 'boolean') {
      // No default on the command: an option not given stays out, and the schema's default applies.
      command.addOption(new Option(flag.flag, help).default(undefined));
      continue;
    }
    const option = new Option(`${flag.flag} <${value}>`, help);
    if (flag.kind.type === 'number') option.argParser(numberParser(flag.flag, flag.kind));
    else if (flag.kind.type === 'record') option.argParser(entryParser(flag.flag, flag.option === 'headers' ? ':' : '='));
    else if (FILE_OPTIONS.has(flag.option)) option.argParser(readText(flag.flag));
    command.addOption(option);
  }
  return command;
}

/** The job options given on the command line, keyed by option name (unset ones left out). */
export function jobOptionsFromFlags(flags: Record<string, unknown>, schema?: OptionsSchema): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const { option, key } of jobFlags(schema)) if (flags[key] !== undefined) options[option] = flags[key];
  return options;
}

/** Rewrites an options error to name the flag rather than the JSON field. */
export function flagError(error: OptionsError): OptionsError {
  const flag = error.field ? flagOf(error.field.split('.')[0]!) : undefined;
  if (!flag) return error;
  return new OptionsError(error.message.replace(/^option "[^"]+"/, flag), error.field);
}
